package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
)

func TestParseHandlerShapes(t *testing.T) {
	h, err := ParseHandler(`{"exec":{"command":["sh","-c","echo hi"]}}`)
	if err != nil || h.Exec == nil || strings.Join(h.Exec.Command, " ") != "sh -c echo hi" {
		t.Fatalf("exec: %+v, %v", h, err)
	}
	h, err = ParseHandler(`{"httpGet":{"path":"/quit?now=1","port":"8080","host":"10.0.0.1","scheme":"HTTPS",
		"httpHeaders":[{"name":"X-Token","value":"t"}]}}`)
	if err != nil || h.HTTPGet == nil || h.HTTPGet.Port != 8080 || h.HTTPGet.Host != "10.0.0.1" ||
		len(h.HTTPGet.HTTPHeaders) != 1 || h.HTTPGet.HTTPHeaders[0].Value != "t" {
		t.Fatalf("httpGet: %+v, %v", h, err)
	}
	h, err = ParseHandler(`{"tcpSocket":{"port":5432}}`)
	if err != nil || h.TCPSocket == nil || h.TCPSocket.Port != 5432 {
		t.Fatalf("tcpSocket: %+v, %v", h, err)
	}
	h, err = ParseHandler(`{"sleep":{"seconds":0}}`)
	if err != nil || h.Sleep == nil {
		t.Fatalf("sleep: %+v, %v", h, err)
	}
}

func TestParseHandlerRejects(t *testing.T) {
	for name, in := range map[string]string{
		"not json":        `exec: sh`,
		"empty":           `{}`,
		"two actions":     `{"exec":{"command":["true"]},"sleep":{"seconds":1}}`,
		"no command":      `{"exec":{"command":[]}}`,
		"named port":      `{"httpGet":{"port":"http"}}`,
		"port zero":       `{"tcpSocket":{"port":0}}`,
		"port too big":    `{"tcpSocket":{"port":70000}}`,
		"no port":         `{"httpGet":{"path":"/"}}`,
		"bad scheme":      `{"httpGet":{"port":80,"scheme":"ftp"}}`,
		"bad header":      `{"httpGet":{"port":80,"httpHeaders":[{"name":"a b","value":"x"}]}}`,
		"negative sleep":  `{"sleep":{"seconds":-1}}`,
		"misspelt field":  `{"exec":{"commands":["true"]}}`,
		"unknown action":  `{"grpc":{"port":1}}`,
		"trailing data":   `{"sleep":{"seconds":1}} {}`,
		"port as float":   `{"tcpSocket":{"port":80.5}}`,
		"command as text": `{"exec":{"command":"true"}}`,
	} {
		if h, err := ParseHandler(in); err == nil {
			t.Errorf("%s: %q accepted as %+v", name, in, h)
		}
	}
}

func TestParseHooks(t *testing.T) {
	hk, err := ParseHooks(nil)
	if err != nil || hk.PostStart != nil || hk.PreStop != nil || hk.Grace != 0 {
		t.Fatalf("no annotations: %+v, %v", hk, err)
	}
	// Hooks without a grace get Kubernetes' default.
	hk, err = ParseHooks(map[string]string{AnnotationPreStop: `{"sleep":{"seconds":1}}`})
	if err != nil || hk.PreStop == nil || hk.Grace != DefaultHookGrace || hk.GraceSet {
		t.Fatalf("preStop only: %+v, %v", hk, err)
	}
	hk, err = ParseHooks(map[string]string{AnnotationTerminationGrace: " 7 ", AnnotationPostStart: `{"exec":{"command":["true"]}}`})
	if err != nil || hk.PostStart == nil || hk.Grace != 7*time.Second || !hk.GraceSet {
		t.Fatalf("grace 7: %+v, %v", hk, err)
	}
	hk, err = ParseHooks(map[string]string{AnnotationTerminationGrace: "0"})
	if err != nil || hk.Grace != 0 || !hk.GraceSet {
		t.Fatalf("grace 0: %+v, %v", hk, err)
	}
	for _, bad := range []map[string]string{
		{AnnotationPostStart: `{"exec":{}}`},
		{AnnotationPreStop: `nope`},
		{AnnotationTerminationGrace: "-1"},
		{AnnotationTerminationGrace: "ten"},
		{AnnotationTerminationGrace: "99999999999999"},
	} {
		if _, err := ParseHooks(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseHooks(%v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestExecHook(t *testing.T) {
	var ran []string
	env := HookEnv{Exec: func(_ context.Context, cmd []string) ([]byte, []byte, int32, error) {
		ran = cmd
		if cmd[0] == "fail" {
			return []byte("out"), []byte("boom"), 3, nil
		}
		return []byte("fine\n"), nil, 0, nil
	}}
	h := &Handler{Exec: &ExecAction{Command: []string{"ok", "arg"}}}
	if out, err := h.Run(context.Background(), env); err != nil || out != "fine" || strings.Join(ran, " ") != "ok arg" {
		t.Fatalf("exec ok: %q, %v (ran %q)", out, err, ran)
	}
	h = &Handler{Exec: &ExecAction{Command: []string{"fail"}}}
	out, err := h.Run(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "code 3") || out != "out\nboom" {
		t.Fatalf("exec non-zero: %q, %v", out, err)
	}
}

func TestHTTPGetHook(t *testing.T) {
	type seen struct{ path, host, token, agent string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.RequestURI(), r.Host, r.Header.Get("X-Token"), r.UserAgent()}
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("short and stout")) //nolint:errcheck // test server
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	hostIP, portStr, _ := net.SplitHostPort(u.Host)
	port, _ := strconv.Atoi(portStr)

	h := &Handler{HTTPGet: &HTTPGetAction{Path: "quit?now=1", Port: Port(port),
		HTTPHeaders: []HTTPHeader{{"X-Token", "secret"}, {"Host", "example.test"}}}}
	// No host in the action: the environment's (the pod IP) is used.
	out, err := h.Run(context.Background(), HookEnv{Host: hostIP})
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.path != "/quit?now=1" || s.host != "example.test" || s.token != "secret" || s.agent == "" {
		t.Errorf("request seen as %+v", s)
	}
	// The status is reported, not judged, as by the kubelet.
	if !strings.Contains(out, "418") || !strings.Contains(out, "short and stout") {
		t.Errorf("output %q", out)
	}

	srv.Close()
	if _, err := h.Run(context.Background(), HookEnv{Host: hostIP}); err == nil {
		t.Error("httpGet to a closed port succeeded")
	}
}

func TestTCPSocketHook(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			close(accepted)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	h := &Handler{TCPSocket: &TCPSocketAction{Port: Port(port)}}
	if _, err := h.Run(context.Background(), HookEnv{Host: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the listener")
	}
	ln.Close()
	if _, err := h.Run(context.Background(), HookEnv{Host: "127.0.0.1"}); err == nil {
		t.Error("tcpSocket to a closed port succeeded")
	}
}

func TestSleepHookIsCancellable(t *testing.T) {
	h := &Handler{Sleep: &SleepAction{Seconds: 3600}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := h.Run(ctx, HookEnv{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled sleep returned %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancelled sleep took %v", d)
	}
	if _, err := (&Handler{Sleep: &SleepAction{Seconds: 0}}).Run(context.Background(), HookEnv{}); err != nil {
		t.Fatalf("sleep 0: %v", err)
	}
}

func TestBoundedOutput(t *testing.T) {
	long := strings.Repeat("x", 5000)
	out := boundedOutput([]byte(long))
	if len(out) > 1100 || !strings.Contains(out, "5000 bytes") {
		t.Errorf("bounded output is %d bytes: %q...", len(out), out[:40])
	}
}
