package lifecycle

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HookEnv is what a handler acts on.
type HookEnv struct {
	// Exec runs cmd in the container until it ends or ctx does.
	Exec func(ctx context.Context, cmd []string) (stdout, stderr []byte, exitCode int32, err error)
	// Host is the address httpGet and tcpSocket use when the handler names
	// none: the pod IP, or the loopback address for host-network pods.
	Host string
	// DialTimeout bounds connection set-up of tcpSocket and httpGet.
	DialTimeout time.Duration
}

// defaultDialTimeout bounds a connection attempt when HookEnv names none.
const defaultDialTimeout = 10 * time.Second

// Run runs the handler until it completes or ctx ends, and returns what it
// printed (bounded) for the logs. A handler that ran and failed returns its
// output along with the error.
func (h *Handler) Run(ctx context.Context, env HookEnv) (string, error) {
	switch {
	case h.Exec != nil:
		return runExec(ctx, h.Exec, env)
	case h.HTTPGet != nil:
		return runHTTPGet(ctx, h.HTTPGet, env)
	case h.TCPSocket != nil:
		return "", runTCP(ctx, h.TCPSocket, env)
	case h.Sleep != nil:
		return "", runSleep(ctx, h.Sleep)
	}
	return "", fmt.Errorf("hook has no action")
}

func runExec(ctx context.Context, a *ExecAction, env HookEnv) (string, error) {
	if env.Exec == nil {
		return "", fmt.Errorf("exec hooks are not available")
	}
	stdout, stderr, code, err := env.Exec(ctx, a.Command)
	out := boundedOutput(stdout, stderr)
	if err != nil {
		return out, err
	}
	// As with the kubelet, a command that exits non-zero is a failed hook.
	if code != 0 {
		return out, fmt.Errorf("command %q exited with code %d", a.Command, code)
	}
	return out, nil
}

func host(named string, env HookEnv) string {
	if named != "" {
		return named
	}
	if env.Host != "" {
		return env.Host
	}
	return "127.0.0.1"
}

func dialTimeout(env HookEnv) time.Duration {
	if env.DialTimeout > 0 {
		return env.DialTimeout
	}
	return defaultDialTimeout
}

// hookURL puts the action's path (which may carry a query) on the target.
func hookURL(a *HTTPGetAction, env HookEnv) *url.URL {
	u, err := url.Parse(a.Path)
	if err != nil {
		u = &url.URL{Path: a.Path}
	}
	if u.Path != "" && !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	u.Scheme = "http"
	if strings.EqualFold(a.Scheme, "HTTPS") {
		u.Scheme = "https"
	}
	u.Host = net.JoinHostPort(host(a.Host, env), strconv.Itoa(int(a.Port)))
	return u
}

// runHTTPGet follows the kubelet: only a request that could not be made
// (or no response) fails the hook, whatever the status code; the status is
// in the returned output for the logs.
func runHTTPGet(ctx context.Context, a *HTTPGetAction, env HookEnv) (string, error) {
	u := hookURL(a, env)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "crishim-lifecycle-hook")
	req.Header.Set("Accept", "*/*")
	for _, hd := range a.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	transport := &http.Transport{
		DialContext:       (&net.Dialer{Timeout: dialTimeout(env)}).DialContext,
		DisableKeepAlives: true,
		// The kubelet does not verify certificates of hook endpoints
		// either: a pod's serving certificate is not issued for its IP.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		Proxy:           nil,
	}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Sprintf("HTTP %d %s", resp.StatusCode, boundedOutput(body)), nil
}

func runTCP(ctx context.Context, a *TCPSocketAction, env HookEnv) error {
	addr := net.JoinHostPort(host(a.Host, env), strconv.Itoa(int(a.Port)))
	conn, err := (&net.Dialer{Timeout: dialTimeout(env)}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func runSleep(ctx context.Context, a *SleepAction) error {
	t := time.NewTimer(time.Duration(a.Seconds) * time.Second)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
