package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxExecOutput bounds what ExecSync keeps of each stream; the rest is
// read and dropped so the process never blocks on a full pipe.
const maxExecOutput = 16 << 20

// execOverrun bounds how long an exec takes beyond its timeout, or beyond
// its client's departure: the kubelet counts on the timeout, and a command
// that ignores its kill or leaves a child holding its output must not hold
// the RPC or the session for long.
const execOverrun = time.Second

// execIOWait bounds the wait for the output of a command without a
// timeout after it exited.
const execIOWait = 5 * time.Second

// initialSizeWait is how long a TTY exec waits for the client's terminal
// size before starting without one.
const initialSizeWait = 500 * time.Millisecond

// ExitError is an exec'd command that ran and exited non-zero.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with code %d", e.Code) }

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu        sync.Mutex
	max       int
	buf       bytes.Buffer
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room < len(p) {
		b.truncated = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

func (b *cappedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}

// ExecSync runs cmd in a running container, killing it after timeout seconds (0: none).
// A timeout returns an error wrapping context.DeadlineExceeded, which
// errdefs.ToGRPC maps to codes.DeadlineExceeded as the kubelet expects.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) (*runtime.ExecSyncResponse, error) {
	stdout := &cappedBuffer{max: maxExecOutput}
	stderr := &cappedBuffer{max: maxExecOutput}
	res, err := m.exec(ctx, id, execRequest{
		rpc: "ExecSync", cmd: cmd, streams: Streams{Stdout: stdout, Stderr: stderr},
		timeout: execTimeout(timeout),
	})
	if err != nil {
		return nil, err
	}
	if stdout.Truncated() || stderr.Truncated() {
		res.log.WithField("limit_bytes", maxExecOutput).Warn("exec output truncated")
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(res.code)}, nil
}

// execTimeout is ExecSync's timeout in seconds as a duration. Beyond what
// a time.Duration holds (about 292 years) it would wrap around, to a
// deadline already past for math.MaxInt64: that long is no timeout.
func execTimeout(seconds int64) time.Duration {
	if seconds <= 0 || seconds > int64(math.MaxInt64/time.Second) {
		return 0
	}
	return time.Duration(seconds) * time.Second
}

// Exec runs cmd in a running container wired to the client's streams and
// returns when it exits: nil for exit code 0, an *ExitError for any other.
// When ctx ends first (the client went away) the process is killed. The
// process and its FIFOs are removed in every case.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, s Streams) error {
	res, err := m.exec(ctx, id, execRequest{rpc: "Exec", cmd: cmd, streams: s})
	if err != nil {
		return err
	}
	if res.code != 0 {
		return &ExitError{Code: res.code}
	}
	return nil
}

// execRequest is one command for exec to run.
type execRequest struct {
	// rpc names the request in logs.
	rpc string
	cmd []string
	// streams are the process's. A nil Stdin gives it none; output to a
	// nil writer is dropped.
	streams Streams
	// timeout, when not zero, is when the command is killed and exec
	// fails with context.DeadlineExceeded.
	timeout time.Duration
}

// execResult is how an exec'd command ended.
type execResult struct {
	code int
	// log has the exec's pod, container and rpc.
	log *logrus.Entry
}

// exec is the one exec path of ExecSync and Exec: it resolves a running
// container, runs cmd there as a new process with the container's own
// process settings, feeds it req.streams (stdin's end closes the process's
// stdin; terminal resizes follow) and returns its exit code once its
// output is copied.
//
// When the timeout or ctx ends first, the process is killed and exec
// returns within execOverrun. A command that exits but leaves a child
// holding its output gets execIOWait (less when the timeout is nearer) for
// the output, then what arrived is the output. The process and its FIFOs
// are removed in every case: before exec returns, or in the background
// when the process or its output is not done with by then.
func (m *Manager) exec(ctx context.Context, id string, req execRequest) (execResult, error) {
	if len(req.cmd) == 0 {
		return execResult{}, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	ctx = m.nsCtx(ctx)
	e, task, base, err := m.execTarget(ctx, id)
	if err != nil {
		return execResult{}, err
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id, "rpc": req.rpc})
	res := execResult{log: log}
	s := req.streams

	var stdin io.Reader
	stdinEnded := make(chan struct{})
	if s.Stdin != nil {
		stdin = &endNotifier{r: s.Stdin, ended: stdinEnded}
	}
	// The shim wants somewhere to put both outputs even when the client
	// wants neither.
	stdout, stderr := s.Stdout, s.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil && !s.TTY {
		stderr = io.Discard
	}
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(m.execFIFODir(e.id))}
	if s.TTY {
		opts = append(opts, cio.WithTerminal)
	}
	pspec := execSpec(base, req.cmd, s.TTY)
	if s.TTY && s.Resize != nil {
		pspec.ConsoleSize = initialSize(ctx, s.Resize)
	}
	process, err := task.Exec(ctx, newExecID(), pspec, cio.NewCreator(opts...))
	if err != nil {
		return execResult{}, fmt.Errorf("exec in container %s: %w", e.id, err)
	}
	// Whatever happens from here, the process and its FIFOs go away.
	abandoned := false
	defer func() {
		if !abandoned {
			m.reapExec(process, log)
		}
	}()
	exitCh, err := process.Wait(m.nsCtx(context.Background()))
	if err != nil {
		return execResult{}, fmt.Errorf("wait for exec in container %s: %w", e.id, err)
	}
	if err := process.Start(ctx); err != nil {
		return execResult{}, fmt.Errorf("start exec in container %s: %w", e.id, err)
	}

	// The helpers end before the process is deleted (deferred above).
	done := make(chan struct{})
	var helpers sync.WaitGroup
	defer helpers.Wait()
	defer close(done)
	if stdin != nil {
		helpers.Add(1)
		go func() {
			defer helpers.Done()
			select {
			case <-stdinEnded:
			case <-done:
				return
			}
			// The client's EOF reaches the process only once the shim lets
			// go of its own end of the stdin FIFO.
			cctx, cancel := m.cleanupCtx()
			defer cancel()
			if err := process.CloseIO(cctx, containerd.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
				log.WithError(err).Debug("close exec stdin")
			}
		}()
	}
	if s.TTY && s.Resize != nil {
		helpers.Add(1)
		go func() {
			defer helpers.Done()
			forwardResize(done, s.Resize, func(size TerminalSize) error {
				return process.Resize(ctx, uint32(size.Width), uint32(size.Height))
			}, log)
		}()
	}

	var expired <-chan time.Time
	var deadline time.Time
	if req.timeout > 0 {
		deadline = time.Now().Add(req.timeout)
		timer := time.NewTimer(req.timeout)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case st := <-exitCh:
		code, _, err := st.Result()
		if err != nil {
			return execResult{}, fmt.Errorf("wait for exec in container %s: %w", e.id, err)
		}
		res.code = int(code)
		// Everything the process wrote reaches the client before the
		// status, unless a child of the command holds its output open: what
		// it has written by the deadline (or within execIOWait) is the
		// output.
		ioWait := execIOWait
		if !deadline.IsZero() {
			ioWait = min(ioWait, max(time.Until(deadline), 0)+execOverrun)
		}
		if !waitIO(process.IO(), ioWait) {
			log.Warn("exec output still open after the command exited; returning what it wrote")
			abandoned = true
			m.abandonExec(process, log)
		}
		return res, nil
	case <-expired:
		abandoned = true
		m.killExec(process, exitCh, log)
		m.abandonExec(process, log)
		return execResult{}, fmt.Errorf("command %q in container %s timed out after %s: %w", req.cmd, e.id, req.timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		abandoned = true
		m.killExec(process, exitCh, log)
		m.abandonExec(process, log)
		return execResult{}, fmt.Errorf("exec in container %s: %w", e.id, ctx.Err())
	}
}

// execTarget resolves a running container, its task and the process spec
// an exec starts from.
func (m *Manager) execTarget(ctx context.Context, id string) (*entry, containerd.Task, *specs.Process, error) {
	e, err := m.get(id)
	if err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	running := e.state == runtime.ContainerState_CONTAINER_RUNNING
	e.mu.Unlock()
	spec := e.currentSpec()
	if !running || spec == nil || spec.Process == nil {
		return nil, nil, nil, fmt.Errorf("container %s is not running: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	c, err := m.client.LoadContainer(ctx, e.id)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load container %s: %w", e.id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("task of container %s: %w", e.id, err)
	}
	return e, task, spec.Process, nil
}

// execSpec is the container's own process (user, env, cwd, capabilities,
// ...) running cmd instead.
func execSpec(base *specs.Process, cmd []string, tty bool) *specs.Process {
	p := *base
	p.Args = cmd
	p.Terminal = tty
	p.ConsoleSize = nil
	return &p
}

// endNotifier closes ended when its reader reports EOF or an error: the
// moment the client's stdin is over.
type endNotifier struct {
	r     io.Reader
	ended chan struct{}
	once  sync.Once
}

func (n *endNotifier) Read(p []byte) (int, error) {
	c, err := n.r.Read(p)
	if err != nil {
		n.once.Do(func() { close(n.ended) })
	}
	return c, err
}

// initialSize waits up to initialSizeWait for the client's terminal size.
// Clients send it as soon as the session opens; starting with it spares
// the command a 0x0 terminal.
func initialSize(ctx context.Context, sizes <-chan TerminalSize) *specs.Box {
	timer := time.NewTimer(initialSizeWait)
	defer timer.Stop()
	select {
	case size, ok := <-sizes:
		if ok && size.Width > 0 && size.Height > 0 {
			return &specs.Box{Width: uint(size.Width), Height: uint(size.Height)}
		}
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil
}

func newExecID() string {
	b := make([]byte, 16)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return "exec-" + hex.EncodeToString(b)
}

// execFIFODir holds the FIFOs of a container's exec processes; cio
// removes each process's own FIFOs when the process is deleted.
func (m *Manager) execFIFODir(id string) string { return filepath.Join(m.fifoDir(id), "exec") }

// reapExec deletes an exec process and its FIFOs once its output has been
// read: what is still open (a child holding stdout) is cut off.
func (m *Manager) reapExec(process containerd.Process, log *logrus.Entry) {
	cctx, cancel := m.cleanupCtx()
	defer cancel()
	process.IO().Cancel()
	process.IO().Close()
	if _, err := process.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		log.WithError(err).Warn("delete exec process")
	}
}

// killExec kills an exec process and waits at most execOverrun for its exit.
func (m *Manager) killExec(process containerd.Process, exitCh <-chan containerd.ExitStatus, log *logrus.Entry) {
	kctx, cancel := context.WithTimeout(m.nsCtx(context.Background()), execOverrun)
	defer cancel()
	if err := process.Kill(kctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		log.WithError(err).Warn("kill exec process")
	}
	select {
	case <-exitCh:
	case <-kctx.Done():
		log.Warn("exec process not gone yet after SIGKILL")
	}
}

// abandonExec drops an exec process's output and leaves its deletion to
// the background: the shim's delete waits for the exit, which a process
// stuck in the kernel may not give soon, and for the output, which a child
// of the command may hold open.
func (m *Manager) abandonExec(process containerd.Process, log *logrus.Entry) {
	process.IO().Cancel()
	process.IO().Close()
	go m.reapExec(process, log)
}

// waitIO waits up to d for the exec output copy to finish.
func waitIO(io cio.IO, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		io.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
