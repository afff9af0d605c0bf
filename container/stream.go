package container

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/container/taskio"
)

// TerminalSize is a client terminal's size in character cells.
type TerminalSize struct {
	Width, Height uint16
}

// Streams are the client's ends of an interactive exec or an attach. A
// nil stream is one the client did not ask for. With TTY the process has a
// terminal, which carries both of its output streams on Stdout.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
	// Resize delivers the client's terminal size changes; nil without a TTY.
	Resize <-chan TerminalSize
}

// attachBacklog bounds the output queued for one slow attach client.
const attachBacklog = 4 << 20

// Attach connects the client's streams to a running container's main
// process: its live output (the log file keeps receiving it too), its
// stdin when the container was created with one, and its terminal size.
// It returns when the container exits or the client goes away (ctx ends or
// writing to it fails). With stdin_once, the end of the client's stdin
// closes the container's stdin for good.
func (m *Manager) Attach(ctx context.Context, id string, s Streams) error {
	e, tio, err := m.runningIO(id)
	if err != nil {
		return err
	}
	log := m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id})

	q := newOutputQueue(attachBacklog)
	unsubscribe, err := m.SubscribeOutput(e.id, q.push)
	if err != nil {
		return err
	}
	defer unsubscribe()
	delivered := make(chan error, 1)
	go func() { delivered <- q.deliver(s.Stdout, s.Stderr, log) }()

	done := make(chan struct{})
	defer close(done)
	if s.Stdin != nil && e.cfg.GetStdin() && tio.HasStdin() {
		go m.feedStdin(e, tio, s.Stdin, log)
	}
	if s.TTY && s.Resize != nil && e.cfg.GetTty() {
		go forwardResize(done, s.Resize, func(size TerminalSize) error {
			return m.resizeTask(ctx, e.id, size)
		}, log)
	}

	select {
	case <-e.exited:
		// The exit path drained the output into q before closing exited.
		unsubscribe()
		q.close()
		select {
		case <-delivered:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			log.Warn("attach client too slow to take the container's last output")
		}
		return nil
	case err := <-delivered:
		unsubscribe()
		log.WithError(err).Debug("attach client stopped reading")
		return nil
	case <-ctx.Done():
		unsubscribe()
		q.close()
		return nil
	}
}

// feedStdin copies an attach client's input into the container's stdin.
// It may outlive the attach while a write blocks on a container that does
// not read; the container's exit closes the FIFO and ends it.
func (m *Manager) feedStdin(e *entry, tio *taskio.IO, in io.Reader, log *logrus.Entry) {
	_, err := io.Copy(tio.Stdin(), in)
	if err != nil && !errors.Is(err, taskio.ErrStdinClosed) {
		log.WithError(err).Debug("attach stdin copy ended")
	}
	if !e.cfg.GetStdinOnce() || !tio.CloseStdin() {
		return
	}
	ctx, cancel := m.cleanupCtx()
	defer cancel()
	c, err := m.client.LoadContainer(ctx, e.id)
	if err == nil {
		var task containerd.Task
		if task, err = c.Task(ctx, nil); err == nil {
			err = task.CloseIO(ctx, containerd.WithStdinCloser)
		}
	}
	if err != nil && !errdefs.IsNotFound(err) {
		log.WithError(err).Warn("close container stdin after the attach (stdin_once)")
		return
	}
	log.Debug("closed container stdin after the attach (stdin_once)")
}

// resizeTask sets the terminal size of a container's main process.
func (m *Manager) resizeTask(ctx context.Context, id string, size TerminalSize) error {
	ctx = m.nsCtx(ctx)
	c, err := m.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return err
	}
	return task.Resize(ctx, uint32(size.Width), uint32(size.Height))
}

// forwardResize applies each size from sizes until done or sizes closes.
// A failed resize is not fatal: the session goes on at the old size.
func forwardResize(done <-chan struct{}, sizes <-chan TerminalSize, apply func(TerminalSize) error, log *logrus.Entry) {
	for {
		select {
		case <-done:
			return
		case size, ok := <-sizes:
			if !ok {
				return
			}
			if size.Width == 0 || size.Height == 0 {
				continue
			}
			if err := apply(size); err != nil {
				log.WithError(err).Debug("resize terminal")
			}
		}
	}
}

type outputChunk struct {
	stream string
	data   []byte
}

// outputQueue carries a container's output to one attach client. The
// output pump (taskio) publishes into it and must never wait for a client,
// so chunks queue here up to limit bytes and any more are dropped, not
// blocked on.
type outputQueue struct {
	mu      sync.Mutex
	chunks  []outputChunk
	size    int
	limit   int
	dropped int
	closed  bool
	ready   chan struct{} // signalled on new data and on close
}

func newOutputQueue(limit int) *outputQueue {
	return &outputQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// push queues a copy of p; the caller reuses its buffer.
func (q *outputQueue) push(stream string, p []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.size+len(p) > q.limit {
		q.dropped += len(p)
		return
	}
	q.chunks = append(q.chunks, outputChunk{stream: stream, data: append([]byte(nil), p...)})
	q.size += len(p)
	q.signal()
}

// close ends the queue: deliver returns once what is queued went out.
func (q *outputQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

func (q *outputQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take waits for queued chunks; ok is false once the queue is closed and empty.
func (q *outputQueue) take() (chunks []outputChunk, dropped int, ok bool) {
	for {
		q.mu.Lock()
		chunks, dropped, closed := q.chunks, q.dropped, q.closed
		q.chunks, q.size, q.dropped = nil, 0, 0
		q.mu.Unlock()
		if len(chunks) > 0 || dropped > 0 {
			return chunks, dropped, true
		}
		if closed {
			return nil, 0, false
		}
		<-q.ready
	}
}

// deliver writes queued output to the client until the queue is closed
// and empty (nil) or a write fails (the error). Output of a stream the
// client did not ask for is discarded. Drops are warned about on log.
func (q *outputQueue) deliver(stdout, stderr io.Writer, log *logrus.Entry) error {
	for {
		chunks, dropped, ok := q.take()
		if !ok {
			return nil
		}
		if dropped > 0 {
			log.WithField("bytes", dropped).Warn("attach client too slow: dropped container output (the log file has it)")
		}
		for _, c := range chunks {
			w := stdout
			if c.stream == taskio.Stderr {
				w = stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(c.data); err != nil {
				return err
			}
		}
	}
}
