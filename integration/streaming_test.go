//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/crishim/crishim/integration/testenv"
)

// These tests speak the streaming protocols the way kubectl and crictl do:
// SPDY/3.1 with the v4.channel.k8s.io subprotocol for exec and attach
// (exit codes in a JSON status on the error stream) and portforward.k8s.io.

const (
	execProtocol        = "v4.channel.k8s.io"
	portForwardProtocol = "portforward.k8s.io"
)

// terminalSize is remotecommand's resize message.
type terminalSize struct {
	Width  uint16
	Height uint16
}

// session is what a client asks of an exec or attach session. The streams
// it opens must match the request the URL was made for.
type session struct {
	stdin bool
	input string // written to stdin, which is then closed
	// keepStdin holds stdin open until the process has exited: the shim
	// closes a terminal when its input ends, and the process gets SIGHUP.
	keepStdin      bool
	stdout, stderr bool
	tty            bool
	size           *terminalSize // sent on the resize stream (tty only)
}

// streamStatus is the v4 status the server writes on the error stream.
type streamStatus struct {
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Details *struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// exitCode is the command's exit code as the status reports it.
func (s streamStatus) exitCode() (int, error) {
	switch {
	case s.Status == "Success":
		return 0, nil
	case s.Reason == "NonZeroExitCode" && s.Details != nil:
		for _, c := range s.Details.Causes {
			if c.Reason == "ExitCode" {
				return strconv.Atoi(c.Message)
			}
		}
	}
	return -1, fmt.Errorf("status carries no exit code: %+v", s)
}

type sessionResult struct {
	stdout, stderr string
	status         streamStatus
}

func newStream(conn httpstream.Connection, typ string) (httpstream.Stream, error) {
	h := http.Header{}
	h.Set("streamType", typ)
	return conn.CreateStream(h)
}

// runSession runs one exec or attach session at rawURL to its end.
func runSession(rawURL string, s session) (sessionResult, error) {
	var res sessionResult
	conn, raw, err := testenv.SPDYDial(rawURL, execProtocol)
	if err != nil {
		return res, err
	}
	defer raw.Close()
	errStream, err := newStream(conn, "error")
	if err != nil {
		return res, err
	}
	var stdin, resize httpstream.Stream
	var copies sync.WaitGroup
	var stdout, stderr bytes.Buffer
	if s.stdin {
		if stdin, err = newStream(conn, "stdin"); err != nil {
			return res, err
		}
	}
	for _, o := range []struct {
		want bool
		typ  string
		buf  *bytes.Buffer
	}{{s.stdout, "stdout", &stdout}, {s.stderr, "stderr", &stderr}} {
		if !o.want {
			continue
		}
		st, err := newStream(conn, o.typ)
		if err != nil {
			return res, err
		}
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(o.buf, st) //nolint:errcheck // the status tells how it ended
		}()
	}
	if s.tty {
		if resize, err = newStream(conn, "resize"); err != nil {
			return res, err
		}
		if s.size != nil {
			if err := json.NewEncoder(resize).Encode(s.size); err != nil {
				return res, err
			}
		}
	}
	if stdin != nil {
		go func() {
			io.WriteString(stdin, s.input) //nolint:errcheck
			if !s.keepStdin {
				stdin.Close()
			}
		}()
	}
	data, err := io.ReadAll(errStream)
	if stdin != nil && s.keepStdin {
		stdin.Close()
	}
	if err != nil {
		return res, err
	}
	copies.Wait()
	res.stdout, res.stderr = stdout.String(), stderr.String()
	if len(data) > 0 {
		if err := json.Unmarshal(data, &res.status); err != nil {
			return res, fmt.Errorf("status %q: %w", data, err)
		}
	}
	return res, nil
}

// checkStreamURL checks that a streaming URL points at crishim's loopback
// streaming server.
func checkStreamURL(t *testing.T, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("streaming URL %q: %v", raw, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("streaming URL %q: want http://127.0.0.1:<port>/...", raw)
	}
}

// TestStreamingExec drives interactive exec through the streaming server:
// output streams, exit codes, stdin to EOF, a terminal with its size,
// single-use URLs, and the kill of a process whose client went away.
func TestStreamingExec(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "streamexec")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))

	execURL := func(req *runtime.ExecRequest) string {
		t.Helper()
		req.ContainerId = ctrID
		resp, err := c.rt.Exec(rpcCtx(t), req)
		if err != nil {
			t.Fatalf("Exec %q: %v", req.Cmd, err)
		}
		checkStreamURL(t, resp.Url)
		return resp.Url
	}
	run := func(name string, req *runtime.ExecRequest, s session) sessionResult {
		t.Helper()
		res, err := runSession(execURL(req), s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return res
	}

	// Both output streams, apart, and success.
	u := execURL(&runtime.ExecRequest{Cmd: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: true, Stderr: true})
	res, err := runSession(u, session{stdout: true, stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := res.status.exitCode(); err != nil || code != 0 || res.stdout != "out\n" || res.stderr != "err\n" {
		t.Errorf("exec echo: stdout %q stderr %q exit %d (%v), want out/err/0", res.stdout, res.stderr, code, err)
	}
	// The URL's token was used up.
	if resp, err := http.Post(u, "text/plain", nil); err != nil {
		t.Errorf("reuse of an exec URL: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("second request to an exec URL: HTTP %d, want 404", resp.StatusCode)
		}
	}

	// A non-zero exit code reaches the client.
	res = run("exit 3", &runtime.ExecRequest{Cmd: []string{"sh", "-c", "exit 3"}, Stdout: true}, session{stdout: true})
	if code, err := res.status.exitCode(); err != nil || code != 3 {
		t.Errorf("exec `exit 3`: exit %d (%v), want 3; status %+v", code, err, res.status)
	}

	// stdin reaches the process, and its end is the process's EOF.
	input := "line one\nline two\n"
	res = run("cat", &runtime.ExecRequest{Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true},
		session{stdin: true, input: input, stdout: true, stderr: true})
	if code, err := res.status.exitCode(); err != nil || code != 0 || res.stdout != input {
		t.Errorf("exec cat: stdout %q exit %d (%v), want the input back and 0", res.stdout, code, err)
	}

	// A terminal of the client's size, stdin included.
	res = run("tty", &runtime.ExecRequest{Cmd: []string{"sh", "-c", "stty size; tty; read x; echo got-$x"}, Stdin: true, Stdout: true, Tty: true},
		session{stdin: true, input: "abc\n", keepStdin: true, stdout: true, tty: true, size: &terminalSize{Width: 123, Height: 45}})
	if code, err := res.status.exitCode(); err != nil || code != 0 {
		t.Errorf("exec with tty: exit %d (%v)", code, err)
	}
	for _, want := range []string{"45 123\r\n", "/dev/pts/", "got-abc\r\n"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("exec with tty: output %q lacks %q", res.stdout, want)
		}
	}

	// A client that goes away takes its process with it.
	conn, raw, err := testenv.SPDYDial(execURL(&runtime.ExecRequest{Cmd: []string{"sleep", "3217"}, Stdout: true}), execProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newStream(conn, "error"); err != nil {
		t.Fatal(err)
	}
	if _, err := newStream(conn, "stdout"); err != nil {
		t.Fatal(err)
	}
	waitPS(t, c, ctrID, "sleep 3217", true)
	raw.Close()
	waitPS(t, c, ctrID, "sleep 3217", false)

	// Exec needs a command and a running container.
	_, err = c.rt.Exec(rpcCtx(t), &runtime.ExecRequest{ContainerId: ctrID, Stdout: true})
	wantCode(t, "Exec without a command", err, codes.InvalidArgument)
	_, err = c.rt.Exec(rpcCtx(t), &runtime.ExecRequest{ContainerId: ctrID, Cmd: []string{"true"}})
	wantCode(t, "Exec without any stream", err, codes.InvalidArgument)
	_, err = c.rt.Exec(rpcCtx(t), &runtime.ExecRequest{ContainerId: "0123456789abcdef", Cmd: []string{"true"}, Stdout: true})
	wantCode(t, "Exec in an unknown container", err, codes.NotFound)
	created := c.createContainer(podID, pod, containerConfig("notstarted", env.BusyboxImage, idleCmd...))
	_, err = c.rt.Exec(rpcCtx(t), &runtime.ExecRequest{ContainerId: created, Cmd: []string{"true"}, Stdout: true})
	wantCode(t, "Exec in a created container", err, codes.FailedPrecondition)
}

// waitPS polls the container's process list until a process whose
// arguments contain args is there (present) or gone.
func waitPS(t *testing.T, c *client, ctrID, args string, present bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := c.execSync(ctrID, 5, "ps", "-o", "args")
		if strings.Contains(string(res.Stdout), args) == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %q present=%v never came true; ps:\n%s", args, present, res.Stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStreamingAttach attaches to a container's main process: input
// reaches it, its two output streams come back live and apart while the
// log file gets them too, and with stdin_once the end of the client's
// input closes the container's stdin.
func TestStreamingAttach(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "streamattach")
	podID := c.runPod(pod)
	cfg := containerConfig("reader", env.BusyboxImage, "sh", "-c",
		`echo ready; while read l; do echo got:$l; echo err:$l >&2; done; echo bye`)
	cfg.Stdin, cfg.StdinOnce = true, true
	ctrID := c.startContainer(podID, pod, cfg)
	logPath := pod.LogDirectory + "/" + cfg.LogPath
	waitLog(t, logPath, 20*time.Second, func(l map[string][]string) bool { return contains(l["stdout"], "ready") })

	resp, err := c.rt.Attach(rpcCtx(t), &runtime.AttachRequest{ContainerId: ctrID, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	checkStreamURL(t, resp.Url)
	res, err := runSession(resp.Url, session{stdin: true, input: "one\ntwo\n", stdout: true, stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	// Output from before the attach ("ready") is not replayed.
	if res.stdout != "got:one\ngot:two\nbye\n" || res.stderr != "err:one\nerr:two\n" {
		t.Errorf("attach: stdout %q stderr %q", res.stdout, res.stderr)
	}
	if res.status.Status != "Success" && res.status.Status != "" {
		t.Errorf("attach status %+v", res.status)
	}
	st := c.waitContainerState(ctrID, runtime.ContainerState_CONTAINER_EXITED, 20*time.Second)
	if st.ExitCode != 0 {
		t.Errorf("container exit code %d after stdin closed, want 0", st.ExitCode)
	}
	lines := waitLog(t, logPath, 10*time.Second, func(l map[string][]string) bool { return contains(l["stdout"], "bye") })
	if want := []string{"ready", "got:one", "got:two", "bye"}; strings.Join(lines["stdout"], ",") != strings.Join(want, ",") {
		t.Errorf("log stdout %q, want %q", lines["stdout"], want)
	}
	if want := []string{"err:one", "err:two"}; strings.Join(lines["stderr"], ",") != strings.Join(want, ",") {
		t.Errorf("log stderr %q, want %q", lines["stderr"], want)
	}

	_, err = c.rt.Attach(rpcCtx(t), &runtime.AttachRequest{ContainerId: ctrID, Stdout: true})
	wantCode(t, "Attach to an exited container", err, codes.FailedPrecondition)
	_, err = c.rt.Attach(rpcCtx(t), &runtime.AttachRequest{ContainerId: "0123456789abcdef", Stdout: true})
	wantCode(t, "Attach to an unknown container", err, codes.NotFound)
}

// TestStreamingAttachTTY attaches to a container with a terminal: the
// client's keystrokes reach the shell and its terminal takes the client's size.
func TestStreamingAttachTTY(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "streamattachtty")
	podID := c.runPod(pod)
	// The shell waits (10s at most) for the client's size to reach its
	// terminal before it reads the client's input.
	cfg := containerConfig("shell", env.BusyboxImage, "sh", "-c",
		`echo ready; i=0; until [ "$(stty size 2>/dev/null)" = "33 99" ] || [ $i -ge 200 ]; do i=$((i+1)); sleep 0.05; done; read x; stty size; echo got-$x`)
	cfg.Stdin, cfg.Tty = true, true
	ctrID := c.startContainer(podID, pod, cfg)
	waitLog(t, pod.LogDirectory+"/"+cfg.LogPath, 20*time.Second, func(l map[string][]string) bool {
		for _, line := range l["stdout"] {
			if strings.Contains(line, "ready") {
				return true
			}
		}
		return false
	})
	resp, err := c.rt.Attach(rpcCtx(t), &runtime.AttachRequest{ContainerId: ctrID, Stdin: true, Stdout: true, Tty: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	res, err := runSession(resp.Url, session{stdin: true, input: "hi\n", stdout: true, tty: true, size: &terminalSize{Width: 99, Height: 33}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"33 99", "got-hi"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("tty attach output %q lacks %q", res.stdout, want)
		}
	}
}

// portForward forwards one connection to port through rawURL: it sends
// request, half-closes, and returns all the pod sent back and any error
// message from the server.
func portForward(rawURL string, port int, request string) (reply, errMsg string, err error) {
	conn, raw, err := testenv.SPDYDial(rawURL, portForwardProtocol)
	if err != nil {
		return "", "", err
	}
	defer raw.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(port))
	h.Set("requestID", "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return "", "", err
	}
	errStream.Close() // the client never writes to it
	h.Set("streamType", "data")
	data, err := conn.CreateStream(h)
	if err != nil {
		return "", "", err
	}
	errc := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(errStream)
		msg := string(b)
		if err != nil && msg == "" {
			// cri-streaming writes a dial failure to the error stream and
			// resets both streams right after: the reset can overtake the
			// message, so a reset without it is reported as such.
			msg = "stream reset: " + err.Error()
		}
		errc <- msg
	}()
	// A write into a stream the server already reset fails; what the
	// server said is on the error stream, so read it all the same.
	if _, werr := io.WriteString(data, request); werr == nil {
		data.Close()
	}
	b, _ := io.ReadAll(data)
	select {
	case msg := <-errc:
		return string(b), msg, nil
	case <-time.After(10 * time.Second):
		return string(b), "", nil
	}
}

// TestStreamingPortForward reaches a server listening on the pod's own
// loopback, which nothing outside the pod's network namespace can reach.
func TestStreamingPortForward(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "streampf")
	podID := c.runPod(pod)
	page := "pf-" + randomSuffix()
	srv := c.startContainer(podID, pod, containerConfig("server", env.BusyboxImage, "sh", "-c",
		fmt.Sprintf(`mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www`, page)))
	waitPS(t, c, srv, "httpd", true)

	pfURL := func(id string) string {
		t.Helper()
		resp, err := c.rt.PortForward(rpcCtx(t), &runtime.PortForwardRequest{PodSandboxId: id, Port: []int32{8080}})
		if err != nil {
			t.Fatalf("PortForward: %v", err)
		}
		checkStreamURL(t, resp.Url)
		return resp.Url
	}
	var reply, msg string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		reply, msg, err = portForward(pfURL(podID), 8080, "GET /index.html HTTP/1.0\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(reply, page) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(reply, "HTTP/1.") || !strings.Contains(reply, page) || msg != "" {
		t.Errorf("port forward to the pod's httpd: reply %q, error %q; want the page %s", reply, msg, page)
	}

	// Nothing listens on the port: no data comes back and the error stream
	// says so (or is reset before the message gets through, see portForward).
	if reply, msg, err := portForward(pfURL(podID), 8081, "hello"); err != nil || reply != "" ||
		!(strings.Contains(msg, "refused") || strings.HasPrefix(msg, "stream reset: ")) {
		t.Errorf("port forward to a closed port: reply %q, error %q (%v); want connection refused", reply, msg, err)
	}

	_, err := c.rt.PortForward(rpcCtx(t), &runtime.PortForwardRequest{PodSandboxId: "0123456789abcdef", Port: []int32{80}})
	wantCode(t, "PortForward to an unknown pod", err, codes.NotFound)
	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	_, err = c.rt.PortForward(rpcCtx(t), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
	wantCode(t, "PortForward to a stopped pod", err, codes.FailedPrecondition)
}

// TestStreamingPortForwardHostNetwork forwards into a host-network pod,
// which means the host's own loopback: a listener of the test's.
func TestStreamingPortForwardHostNetwork(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "streampfhost")
	pod.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
	}
	podID := c.runPod(pod)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		fmt.Fprintf(conn, "echo:%s", line)
	}()
	port := l.Addr().(*net.TCPAddr).Port
	resp, err := c.rt.PortForward(rpcCtx(t), &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	reply, msg, err := portForward(resp.Url, port, "ping\n")
	if err != nil || reply != "echo:ping\n" || msg != "" {
		t.Errorf("port forward in a host-network pod: reply %q, error %q (%v)", reply, msg, err)
	}
}

// TestStreamingAttachStalledClient attaches a client that stops reading
// while the container writes far more than the attach backlog, the SPDY
// and the socket buffers hold: the container must go on (its output keeps
// reaching the log file) and crishim drops what the client cannot take.
func TestStreamingAttachStalledClient(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "attachstall")
	podID := c.runPod(pod)
	// It says "waiting" until told to go, then writes 32 MB in one burst
	// (the client's buffers took about 11 MB when measured).
	cfg := containerConfig("chatty", env.BusyboxImage, "sh", "-c", `trap "exit 0" TERM
while [ ! -e /go ]; do echo waiting; sleep 0.1; done
yes `+line100+` | head -c 32000000; echo burst-done; touch /done
while true; do sleep 0.1; done`)
	ctrID := c.startContainer(podID, pod, cfg)
	logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)

	resp, err := c.rt.Attach(rpcCtx(t), &runtime.AttachRequest{ContainerId: ctrID, Stdout: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	conn, raw, err := testenv.SPDYDial(resp.Url, execProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := newStream(conn, "error"); err != nil {
		t.Fatal(err)
	}
	stdout, err := newStream(conn, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	// Once a line arrives the attach is live; from then on the client
	// reads nothing until the burst is over.
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "waiting\n" {
		t.Fatalf("first attached line %q, %v; want waiting", line, err)
	}
	c.execSync(ctrID, 10, "touch", "/go")
	c.waitFile(ctrID, "/done", 2*time.Minute)
	waitLog(t, logPath, 30*time.Second, func(l map[string][]string) bool { return contains(l["stdout"], "burst-done") })

	// The client reads again: crishim had to drop output for it.
	go io.Copy(io.Discard, stdout) //nolint:errcheck // ends when the connection closes
	waitCrishimLog(t, 30*time.Second, ctrID, "attach client too slow")
}
