package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/sirupsen/logrus"
)

// taskIO is a container's stdio: FIFOs at fixed paths under the state
// directory, read by crishim and written to the CRI log. The paths are
// recorded by containerd with the task, so a restarted crishim reopens the
// same FIFOs and keeps copying.
//
// It implements cio.IO with no-op Close/Wait so that task.Delete does not
// cut the copy short: the manager drains and closes it itself after exit.
type taskIO struct {
	config cio.Config
	pipes  *cio.DirectIO
	sink   *logSink
	cancel context.CancelFunc
	copied sync.WaitGroup
	once   sync.Once
	// stdinClosed is set once an attach with stdin_once closed the
	// container's stdin for good.
	stdinClosed atomic.Bool
}

// fifoConfig returns the FIFO paths of container id under dir.
func fifoConfig(dir string, stdin, tty bool) cio.Config {
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

// openTaskIO opens (creating when missing) the FIFOs of config and starts
// copying their output into the log at logPath; onDrop (may be nil) is
// told the size of each log entry that could not be written.
func openTaskIO(config cio.Config, logPath string, log *logrus.Entry, onDrop func(bytes int)) (*taskIO, error) {
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
	// The FIFOs live as long as the container, not the request: opening
	// them in the background must not be cancelled with the RPC.
	ctx, cancel := context.WithCancel(context.Background())
	pipes, err := cio.NewDirectIO(ctx, cio.NewFIFOSet(config, nil))
	if err != nil {
		cancel()
		sink.Close()
		return nil, fmt.Errorf("open container fifos: %w", err)
	}
	t := &taskIO{config: config, pipes: pipes, sink: sink, cancel: cancel}
	copyOne := func(stream string, r interface{ Read([]byte) (int, error) }) {
		t.copied.Add(1)
		go func() {
			defer t.copied.Done()
			if err := sink.copyStream(stream, r); err != nil {
				log.WithError(err).WithField("stream", stream).Debug("output copy ended on a read error")
			}
		}()
	}
	if pipes.Stdout != nil {
		copyOne(streamStdout, pipes.Stdout)
	}
	if pipes.Stderr != nil {
		copyOne(streamStderr, pipes.Stderr)
	}
	return t, nil
}

func (t *taskIO) Config() cio.Config { return t.config }
func (t *taskIO) Cancel()            {}
func (t *taskIO) Wait()              {}
func (t *taskIO) Close() error       { return nil }

// drain waits up to d for the output to reach EOF; a process that left a
// child holding the pipes open must not block exit handling forever.
func (t *taskIO) drain(d time.Duration) bool {
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

// shut closes the FIFOs and the log file; the copy goroutines end.
func (t *taskIO) shut() {
	t.once.Do(func() {
		t.cancel()
		t.pipes.Close()
		t.drain(5 * time.Second)
		t.sink.Close()
	})
}
