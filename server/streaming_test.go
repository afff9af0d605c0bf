//go:build linux

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	utilexec "k8s.io/utils/exec"

	"github.com/crishim/crishim/container"
	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/config"
)

func TestExecErrorCarriesExitCode(t *testing.T) {
	err := execError(fmt.Errorf("exec in container c: %w", &container.ExitError{Code: 7}))
	// cri-streaming checks with a plain type assertion, not errors.As.
	exit, ok := err.(utilexec.ExitError)
	if !ok || !exit.Exited() || exit.ExitStatus() != 7 {
		t.Fatalf("execError = %#v, want a utilexec.ExitError with status 7", err)
	}
	other := errors.New("shim gone")
	if got := execError(other); got != other {
		t.Errorf("execError(%v) = %v, want it unchanged", other, got)
	}
	if execError(nil) != nil {
		t.Error("execError(nil) != nil")
	}
}

// fakeRuntime records exec sessions for the streaming server under test.
type fakeRuntime struct {
	started chan context.Context
	result  error
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	f.started <- ctx
	if f.result != nil {
		return f.result
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return errors.New("not in this test")
}

func (f *fakeRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	return errors.New("not in this test")
}

func startStreamService(t *testing.T, rt *fakeRuntime) *streamService {
	t.Helper()
	cfg := config.Default()
	cfg.StreamAddress = "" // must still mean loopback only
	cfg.StreamPort = 0
	s, err := newStreamService(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

// execSession opens a v4 SPDY exec session with an error stream and
// stdout, returning the raw TCP connection and the error stream.
func execSession(t *testing.T, rawURL string) (net.Conn, httpstream.Stream) {
	t.Helper()
	conn, raw, err := testenv.SPDYDial(rawURL, remotecommand.StreamProtocolV4Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	h := http.Header{}
	h.Set(remotecommand.StreamType, remotecommand.StreamTypeError)
	errStream, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(remotecommand.StreamType, remotecommand.StreamTypeStdout)
	if _, err := conn.CreateStream(h); err != nil {
		t.Fatal(err)
	}
	return raw, errStream
}

func getExecURL(t *testing.T, s *streamService) string {
	t.Helper()
	resp, err := s.server.GetExec(&runtime.ExecRequest{ContainerId: "c", Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != s.Addr().String() {
		t.Fatalf("URL %s does not point at the listener %s", resp.Url, s.Addr())
	}
	if host, port, _ := net.SplitHostPort(u.Host); host != "127.0.0.1" || port == "0" {
		t.Fatalf("URL %s: want 127.0.0.1 and the real port", resp.Url)
	}
	return resp.Url
}

// A client that drops its connection ends the session's context, so the
// runtime can kill what the session started.
func TestStreamSessionEndsWhenClientVanishes(t *testing.T) {
	rt := &fakeRuntime{started: make(chan context.Context, 1)}
	s := startStreamService(t, rt)
	raw, _ := execSession(t, getExecURL(t, s))
	var ctx context.Context
	select {
	case ctx = <-rt.started:
	case <-time.After(10 * time.Second):
		t.Fatal("exec never reached the runtime")
	}
	if ctx.Err() != nil {
		t.Fatal("session context over while the client is connected")
	}
	raw.Close()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session context still live after the client went away")
	}
}

// The exit code reaches the client in the v4 status, and the URL is
// single use.
func TestStreamSessionReportsExitCode(t *testing.T) {
	rt := &fakeRuntime{started: make(chan context.Context, 1),
		result: execError(&container.ExitError{Code: 42})}
	s := startStreamService(t, rt)
	u := getExecURL(t, s)
	_, errStream := execSession(t, u)
	data, err := io.ReadAll(errStream)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Reason  string
		Details struct {
			Causes []struct{ Reason, Message string }
		}
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("status %q: %v", data, err)
	}
	if st.Reason != "NonZeroExitCode" || len(st.Details.Causes) != 1 || st.Details.Causes[0].Message != "42" {
		t.Errorf("status %s, want exit code 42", data)
	}
	resp, err := http.Post(u, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("reused URL: HTTP %d, want 404", resp.StatusCode)
	}
}
