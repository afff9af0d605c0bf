package container

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/container/taskio"
)

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var testLog = logrus.NewEntry(logrus.StandardLogger())

func TestOutputQueueDeliversInOrderPerStream(t *testing.T) {
	q := newOutputQueue(1 << 20)
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- q.deliver(&stdout, &stderr, testLog) }()

	buf := []byte("out1\n")
	q.push(taskio.Stdout, buf)
	copy(buf, "XXXX\n") // the publisher reuses its buffer: the queue must have copied
	q.push(taskio.Stderr, []byte("err1\n"))
	q.push(taskio.Stdout, []byte("out2\n"))
	q.close()
	q.push(taskio.Stdout, []byte("after close\n"))
	if err := <-done; err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if got := stdout.String(); got != "out1\nout2\n" {
		t.Errorf("stdout %q", got)
	}
	if got := stderr.String(); got != "err1\n" {
		t.Errorf("stderr %q", got)
	}
}

func TestOutputQueueDropsBeyondLimitWithoutBlocking(t *testing.T) {
	q := newOutputQueue(10)
	q.push(taskio.Stdout, []byte("12345678"))
	q.push(taskio.Stdout, []byte("abcdef")) // would exceed 10: dropped
	q.push(taskio.Stdout, []byte("90"))
	q.close()
	var out bytes.Buffer
	if err := q.deliver(&out, nil, testLog); err != nil {
		t.Fatal(err)
	}
	if out.String() != "1234567890" {
		t.Errorf("delivered %q, want the chunks that fit", out.String())
	}
}

func TestOutputQueueDiscardsUnrequestedStream(t *testing.T) {
	q := newOutputQueue(100)
	q.push(taskio.Stderr, []byte("nobody wants this"))
	q.push(taskio.Stdout, []byte("wanted"))
	q.close()
	var out bytes.Buffer
	if err := q.deliver(&out, nil, testLog); err != nil {
		t.Fatal(err)
	}
	if out.String() != "wanted" {
		t.Errorf("delivered %q", out.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestOutputQueueStopsOnWriteError(t *testing.T) {
	q := newOutputQueue(100)
	q.push(taskio.Stdout, []byte("x"))
	err := q.deliver(failingWriter{}, nil, testLog)
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("deliver to a gone client: %v, want its write error", err)
	}
}

func TestOutputQueueWaitsForData(t *testing.T) {
	q := newOutputQueue(100)
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- q.deliver(&out, nil, testLog) }()
	select {
	case err := <-done:
		t.Fatalf("deliver returned %v on an open, empty queue", err)
	default:
	}
	q.push(taskio.Stdout, []byte("late"))
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "late" {
		if time.Now().After(deadline) {
			t.Fatalf("late chunk not delivered: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	q.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEndNotifierClosesOnEOFOnly(t *testing.T) {
	ended := make(chan struct{})
	r := &endNotifier{r: strings.NewReader("abc"), ended: ended}
	buf := make([]byte, 2)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
		t.Fatal("ended before EOF")
	default:
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("read after EOF: %v", err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("not ended after EOF")
	}
}

func TestForwardResizeSkipsEmptySizesAndStops(t *testing.T) {
	sizes := make(chan TerminalSize)
	done := make(chan struct{})
	var got []TerminalSize
	finished := make(chan struct{})
	go func() {
		forwardResize(done, sizes, func(s TerminalSize) error {
			got = append(got, s)
			return errors.New("resize failures are not fatal")
		}, logrus.NewEntry(logrus.New()))
		close(finished)
	}()
	sizes <- TerminalSize{Width: 80, Height: 24}
	sizes <- TerminalSize{Width: 0, Height: 10}
	sizes <- TerminalSize{Width: 100, Height: 40}
	close(done)
	<-finished
	want := []TerminalSize{{80, 24}, {100, 40}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("applied %v, want %v", got, want)
	}
}

func TestExecSpecLeavesContainerProcessAlone(t *testing.T) {
	base := &specs.Process{Args: []string{"/pause"}, Env: []string{"A=1"}, Cwd: "/work",
		ConsoleSize: &specs.Box{Width: 1, Height: 1}}
	p := execSpec(base, []string{"sh", "-c", "true"}, true)
	if !p.Terminal || p.ConsoleSize != nil || strings.Join(p.Args, " ") != "sh -c true" || p.Cwd != "/work" || p.Env[0] != "A=1" {
		t.Errorf("exec spec %+v", p)
	}
	if base.Terminal || base.Args[0] != "/pause" || base.ConsoleSize == nil {
		t.Errorf("container's process spec changed: %+v", base)
	}
}
