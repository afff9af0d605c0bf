// Package taskio is the stdio of a container's main process: FIFOs that
// crishim reads, copying both output streams into the CRI-format log file
// the kubelet reads (and to live subscribers, for attach), and the
// container's stdin. A log file that cannot be written (a full disk) costs
// log lines, never a blocked container.
package taskio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/sirupsen/logrus"
)

// IO is a container's stdio: FIFOs at fixed paths under the state
// directory, read by crishim and written to the CRI log. The paths are
// recorded by containerd with the task, so a restarted crishim reopens the
// same FIFOs and keeps copying.
//
// It implements cio.IO with no-op Close/Wait so that task.Delete does not
// cut the copy short: its owner drains it and shuts it after the exit.
type IO struct {
	config cio.Config
	// pipes holds the stdin FIFO (if any); the output FIFOs are read by
	// the pump.
	pipes   *cio.DirectIO
	outputs []*pumped
	sink    *logSink
	cancel  context.CancelFunc
	copied  sync.WaitGroup
	once    sync.Once
	// stdinClosed is set once CloseStdin closed the container's stdin
	// for good.
	stdinClosed atomic.Bool
}

// FIFOs returns the FIFO paths of a container's stdio under dir.
func FIFOs(dir string, stdin, tty bool) cio.Config {
	c := cio.Config{
		Stdout:   filepath.Join(dir, "stdout"),
		Terminal: tty,
	}
	if stdin {
		c.Stdin = filepath.Join(dir, "stdin")
	}
	if !tty {
		// A terminal merges both streams into stdout.
		c.Stderr = filepath.Join(dir, "stderr")
	}
	return c
}

// Open opens (creating when missing) the FIFOs of config and starts
// copying their output into the log at logPath (none when empty); onDrop
// (may be nil) is told the size of each log entry that could not be
// written.
func Open(config cio.Config, logPath string, log *logrus.Entry, onDrop func(bytes int)) (*IO, error) {
	for _, p := range []string{config.Stdin, config.Stdout, config.Stderr} {
		if p != "" {
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, fmt.Errorf("create fifo directory: %w", err)
			}
		}
	}
	sink, err := openLogSink(logPath, log, onDrop)
	if err != nil {
		return nil, err
	}
	// The stdin FIFO lives as long as the container, not the request:
	// opening it in the background must not be cancelled with the RPC.
	ctx, cancel := context.WithCancel(context.Background())
	pipes, err := cio.NewDirectIO(ctx, cio.NewFIFOSet(cio.Config{Stdin: config.Stdin}, nil))
	if err != nil {
		cancel()
		sink.Close()
		return nil, fmt.Errorf("open container stdin fifo: %w", err)
	}
	t := &IO{config: config, pipes: pipes, sink: sink, cancel: cancel}
	if err := t.pumpOutput(); err != nil {
		t.Shut()
		return nil, err
	}
	return t, nil
}

// pumpOutput has the pump read the output FIFOs into the sink.
func (t *IO) pumpOutput() error {
	p, err := outputPump()
	if err != nil {
		return err
	}
	for _, out := range []struct{ stream, path string }{{Stdout, t.config.Stdout}, {Stderr, t.config.Stderr}} {
		if out.path == "" {
			continue
		}
		t.copied.Add(1)
		s, err := p.add(out.path, streamLines{sink: t.sink, stream: out.stream}, t.copied.Done)
		if err != nil {
			t.copied.Done()
			return fmt.Errorf("container %s: %w", out.stream, err)
		}
		t.outputs = append(t.outputs, s)
	}
	return nil
}

func (t *IO) Config() cio.Config { return t.config }
func (t *IO) Cancel()            {}
func (t *IO) Wait()              {}
func (t *IO) Close() error       { return nil }

// Drain waits up to d for the output to reach EOF; a process that left a
// child holding the pipes open must not block exit handling forever.
func (t *IO) Drain(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		t.copied.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Shut closes the FIFOs and the log file.
func (t *IO) Shut() {
	t.once.Do(func() {
		t.cancel()
		t.pipes.Close()
		for _, s := range t.outputs {
			s.close()
		}
		t.Drain(5 * time.Second)
		t.sink.Close()
	})
}

// ReopenLog starts a new log file at the same path, after the kubelet
// rotated the old one away.
func (t *IO) ReopenLog() error { return t.sink.Reopen() }

// Subscribe registers fn for the raw output of both streams (stream is
// Stdout or Stderr) as it arrives. fn runs on the goroutine that reads
// every container's output and must not block. The returned function
// unsubscribes.
func (t *IO) Subscribe(fn func(stream string, p []byte)) (unsubscribe func()) {
	return t.sink.Subscribe(fn)
}

// HasStdin tells whether the container was given a stdin.
func (t *IO) HasStdin() bool { return t.pipes.Stdin != nil }

// ErrStdinClosed is what writing to a stdin that CloseStdin closed gets.
var ErrStdinClosed = errors.New("container stdin is closed")

// Stdin writes to the container's stdin FIFO until CloseStdin. Without
// HasStdin, every write fails.
func (t *IO) Stdin() io.Writer { return stdinWriter{t} }

type stdinWriter struct{ t *IO }

func (w stdinWriter) Write(p []byte) (int, error) {
	if w.t.stdinClosed.Load() {
		return 0, ErrStdinClosed
	}
	if w.t.pipes.Stdin == nil {
		return 0, fmt.Errorf("container has no stdin: %w", ErrStdinClosed)
	}
	return w.t.pipes.Stdin.Write(p)
}

// CloseStdin closes crishim's end of the stdin FIFO for good (stdin_once).
// It reports whether this call closed it: only the first does, and only
// its caller goes on to close the task's end.
func (t *IO) CloseStdin() bool {
	if t.pipes.Stdin == nil || !t.stdinClosed.CompareAndSwap(false, true) {
		return false
	}
	t.pipes.Stdin.Close()
	return true
}
