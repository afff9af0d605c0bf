package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

// ExecSync runs cmd in a running container, killing it after timeout seconds (0: none).
// A timeout returns an error wrapping context.DeadlineExceeded, which
// errdefs.ToGRPC maps to codes.DeadlineExceeded as the kubelet expects.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) (*runtime.ExecSyncResponse, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	ctx = m.nsCtx(ctx)
	e, task, err := m.execTarget(ctx, id)
	if err != nil {
		return nil, err
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})

	stdout := &cappedBuffer{max: maxExecOutput}
	stderr := &cappedBuffer{max: maxExecOutput}
	creator := cio.NewCreator(cio.WithStreams(nil, stdout, stderr), cio.WithFIFODir(m.execFIFODir(e.id)))
	process, err := task.Exec(ctx, newExecID(), execSpec(e.currentSpec().Process, cmd, false), creator)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", e.id, err)
	}
	// Whatever happens from here, the exec process and its FIFOs go away.
	abandoned := false
	defer func() {
		if !abandoned {
			m.reapExec(process, log)
		}
	}()
	exitCh, err := process.Wait(m.nsCtx(context.Background()))
	if err != nil {
		return nil, fmt.Errorf("wait for exec in container %s: %w", e.id, err)
	}
	if err := process.Start(ctx); err != nil {
		return nil, fmt.Errorf("start exec in container %s: %w", e.id, err)
	}

	var expired <-chan time.Time
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(time.Duration(timeout) * time.Second)
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case st := <-exitCh:
		code, _, err := st.Result()
		if err != nil {
			return nil, fmt.Errorf("wait for exec in container %s: %w", e.id, err)
		}
		// A child of the command may hold its stdout open for good; what
		// it has written by the deadline (or within execIOWait) is the
		// output.
		ioWait := execIOWait
		if !deadline.IsZero() {
			ioWait = min(ioWait, max(time.Until(deadline), 0)+execOverrun)
		}
		if !waitIO(process.IO(), ioWait) {
			// The shim, too, waits for the output when deleting the
			// process: that is left to the background.
			log.Warn("exec output still open after the command exited; returning what it wrote")
			abandoned = true
			process.IO().Cancel()
			process.IO().Close()
			go m.reapExec(process, log)
		}
		if stdout.truncated || stderr.truncated {
			log.Warn("exec output truncated")
		}
		return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
	case <-expired:
		abandoned = true
		m.abandonExec(process, exitCh, log)
		return nil, fmt.Errorf("command %q in container %s timed out after %ds: %w", cmd, e.id, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		abandoned = true
		m.abandonExec(process, exitCh, log)
		return nil, fmt.Errorf("exec in container %s: %w", e.id, ctx.Err())
	}
}

// execTarget resolves a running container and its task for an exec.
func (m *Manager) execTarget(ctx context.Context, id string) (*entry, containerd.Task, error) {
	e, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	running := e.state == runtime.ContainerState_CONTAINER_RUNNING
	e.mu.Unlock()
	if !running || e.currentSpec() == nil || e.currentSpec().Process == nil {
		return nil, nil, fmt.Errorf("container %s is not running: %w", e.id, errdefs.ErrFailedPrecondition)
	}
	c, err := m.client.LoadContainer(ctx, e.id)
	if err != nil {
		return nil, nil, fmt.Errorf("load container %s: %w", e.id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("task of container %s: %w", e.id, err)
	}
	return e, task, nil
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

func newExecID() string {
	b := make([]byte, 16)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return "exec-" + hex.EncodeToString(b)
}

// execFIFODir holds the FIFOs of a container's exec processes; cio
// removes each process's own FIFOs when the process is deleted.
func (m *Manager) execFIFODir(id string) string { return filepath.Join(m.fifoDir(id), "exec") }

// execOverrun bounds how long ExecSync takes beyond its timeout: the
// kubelet counts on the timeout, and a command that ignores its kill or
// leaves a child holding its output must not hold the RPC for long.
const execOverrun = time.Second

// execIOWait bounds the wait for the output of a command without a
// timeout after it exited.
const execIOWait = 5 * time.Second

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

// abandonExec kills a timed-out or cancelled exec process, drops its
// output and leaves its deletion to the background: the deletion waits for
// the exit, which a process stuck in the kernel may not give soon.
func (m *Manager) abandonExec(process containerd.Process, exitCh <-chan containerd.ExitStatus, log *logrus.Entry) {
	m.killExec(process, exitCh, log)
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
