package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
)

// fakeStream is the client's side of a port-forward data stream: what the
// test writes to in is what the stream reads; what the stream writes
// collects in out.
type fakeStream struct {
	in  *io.PipeReader
	mu  sync.Mutex
	out []byte
}

func newFakeStream() (*fakeStream, *io.PipeWriter) {
	r, w := io.Pipe()
	return &fakeStream{in: r}, w
}

func (s *fakeStream) Read(p []byte) (int, error) { return s.in.Read(p) }
func (s *fakeStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = append(s.out, p...)
	return len(p), nil
}
func (s *fakeStream) Close() error { return nil }
func (s *fakeStream) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.out)
}

// listen serves one connection on the host's loopback with handle.
func listen(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// dialServer starts a one-connection server with handle and returns a
// connection to it from dialLoopback, closed when the test ends.
func dialServer(t *testing.T, handle func(net.Conn)) net.Conn {
	t.Helper()
	conn, err := dialLoopback("", listen(t, handle))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func spliceAsync(ctx context.Context, conn net.Conn, s *fakeStream) <-chan error {
	done := make(chan error, 1)
	go func() { done <- splice(ctx, conn, s) }()
	return done
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("splice did not return")
		return nil
	}
}

// The client's end of input half-closes the connection: the server sees
// EOF and its answer still comes back.
func TestSpliceHalfClosesOnClientEOF(t *testing.T) {
	conn := dialServer(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		c.Write(append([]byte("got:"), req...)) //nolint:errcheck
	})
	s, w := newFakeStream()
	done := spliceAsync(context.Background(), conn, s)
	io.WriteString(w, "hello") //nolint:errcheck
	w.Close()
	if err := waitDone(t, done); err != nil {
		t.Errorf("splice: %v", err)
	}
	if got := s.received(); got != "got:hello" {
		t.Errorf("client received %q, want the answer to its request", got)
	}
}

// The server closing ends the session even while the client still has
// its input open.
func TestSpliceEndsWhenServerCloses(t *testing.T) {
	conn := dialServer(t, func(c net.Conn) { io.WriteString(c, "bye") }) //nolint:errcheck
	s, w := newFakeStream()
	defer w.Close()
	if err := waitDone(t, spliceAsync(context.Background(), conn, s)); err != nil {
		t.Errorf("splice: %v", err)
	}
	if got := s.received(); got != "bye" {
		t.Errorf("client received %q", got)
	}
}

// A client stream that fails takes the connection down.
func TestSpliceEndsOnStreamError(t *testing.T) {
	conn := dialServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) //nolint:errcheck
	s, w := newFakeStream()
	done := spliceAsync(context.Background(), conn, s)
	boom := errors.New("client vanished")
	w.CloseWithError(boom)
	if err := waitDone(t, done); !errors.Is(err, boom) {
		t.Errorf("splice: %v, want the stream's error", err)
	}
}

func TestSpliceEndsWithContext(t *testing.T) {
	conn := dialServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) //nolint:errcheck
	s, w := newFakeStream()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := spliceAsync(ctx, conn, s)
	cancel()
	if err := waitDone(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("splice: %v, want context.Canceled", err)
	}
}

func TestDialLoopbackRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if conn, err := dialLoopback("", port); err == nil {
		conn.Close()
		t.Fatalf("dial to closed port %s succeeded", strconv.Itoa(port))
	}
}

func TestPortForwardRejectsBadPortAndUnknownPod(t *testing.T) {
	m := New(nil, nil, nil, Config{})
	s, w := newFakeStream()
	defer w.Close()
	for _, port := range []int32{0, -1, 65536} {
		if err := m.PortForward(context.Background(), "pod", port, s); !errdefs.IsInvalidArgument(err) {
			t.Errorf("port %d: %v, want invalid argument", port, err)
		}
	}
	if err := m.PortForward(context.Background(), "nosuchpod", 80, s); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v, want not found", err)
	}
}
