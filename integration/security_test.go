//go:build linux

package integration

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestSecuritySocket: only root (and the socket's group) may talk to crishim.
func TestSecuritySocket(t *testing.T) {
	e := needEnv(t)
	crishim, err := e.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(crishim.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is %v, not a socket", crishim.Socket, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %#o, want 0660", perm)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no owner for %s", crishim.Socket)
	}
	if st.Uid != 0 {
		t.Errorf("socket owned by uid %d, want 0 (root)", st.Uid)
	}
}

// socketInodes lists the inodes of the sockets process pid holds open.
func socketInodes(t *testing.T, pid int) map[string]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		if strings.HasPrefix(target, "socket:[") && strings.HasSuffix(target, "]") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	return inodes
}

// procNetAddr decodes a /proc/net/tcp{,6} address: the IP in 32-bit words
// of host (little-endian) byte order, then the port in hex.
func procNetAddr(s string) (net.IP, int, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("address %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, fmt.Errorf("address %q", s)
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 {
		for b := 0; b < 4; b++ {
			ip[w+b] = raw[w+3-b]
		}
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("port in %q: %v", s, err)
	}
	return ip, int(port), nil
}

// tcpListener is a listening TCP socket of the process under test.
type tcpListener struct {
	ip   net.IP
	port int
}

// tcpListeners returns the TCP sockets in LISTEN state (st 0A) whose
// inode is in inodes, from both the IPv4 and IPv6 tables.
func tcpListeners(t *testing.T, inodes map[string]bool) []tcpListener {
	t.Helper()
	var out []tcpListener
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			ip, port, err := procNetAddr(fields[1])
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			out = append(out, tcpListener{ip, port})
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestProcNetAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0050":                         "0.0.0.0:80",
		"0000000000000000FFFF00000100007F:0016": "127.0.0.1:22",
		"00000000000000000000000001000000:01BB": "[::1]:443",
	} {
		ip, port, err := procNetAddr(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := net.JoinHostPort(ip.String(), strconv.Itoa(port)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// TestSecurityStreaming: crishim listens on TCP only for the streaming
// server, only on 127.0.0.1, and its URLs work once.
func TestSecurityStreaming(t *testing.T) {
	c := newClient(t)
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "security")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))

	resp, err := c.rt.Exec(rpcCtx(t), &runtime.ExecRequest{ContainerId: ctrID, Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatalf("streaming URL %q: %v", resp.Url, err)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("streaming URL %q: want host 127.0.0.1", resp.Url)
	}
	streamPort, _ := strconv.Atoi(portStr)

	// Every TCP listener crishim holds is the streaming server's, on loopback.
	listeners := tcpListeners(t, socketInodes(t, crishim.Pid()))
	if len(listeners) == 0 {
		t.Fatalf("crishim (pid %d) has no listening TCP socket; the streaming server should have one", crishim.Pid())
	}
	for _, l := range listeners {
		if !l.ip.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("crishim listens on %s:%d, want only 127.0.0.1", l.ip, l.port)
		}
		if l.port != streamPort {
			t.Errorf("crishim listens on TCP port %d, which is not the streaming server's (%d)", l.port, streamPort)
		}
	}

	// A token that was never issued.
	unknown := *u
	unknown.Path = path.Join(path.Dir(u.Path), "Zm9vYmFy"+randomSuffix())
	if code := postStatus(t, unknown.String()); code != http.StatusNotFound {
		t.Errorf("unknown streaming token: HTTP %d, want 404", code)
	}
	// The issued token works once: the first request finds it (a plain
	// POST is no SPDY upgrade, so it fails later, but not with 404); the
	// second finds it gone.
	if code := postStatus(t, resp.Url); code == http.StatusNotFound {
		t.Errorf("first request to a fresh exec URL: HTTP 404, want the token found")
	}
	if code := postStatus(t, resp.Url); code != http.StatusNotFound {
		t.Errorf("second request to an exec URL: HTTP %d, want 404", code)
	}
}

// postStatus POSTs to rawURL and returns the HTTP status code.
func postStatus(t *testing.T, rawURL string) int {
	t.Helper()
	resp, err := http.Post(rawURL, "text/plain", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", rawURL, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSecurityLogPath: a container's log cannot be put outside its pod's
// log directory.
func TestSecurityLogPath(t *testing.T) {
	c := newClient(t)
	pod := podConfig(t, "logescape")
	podID := c.runPod(pod)
	outside := filepath.Join(filepath.Dir(pod.LogDirectory), "escape-"+randomSuffix()+".log")
	for _, logPath := range []string{
		"../" + filepath.Base(outside),
		"a/../../" + filepath.Base(outside),
		outside, // absolute
		".",
	} {
		cfg := containerConfig("escape", env.BusyboxImage, idleCmd...)
		cfg.LogPath = logPath
		resp, err := c.rt.CreateContainer(rpcCtx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		if err == nil {
			c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: resp.ContainerId})
		}
		wantCode(t, fmt.Sprintf("CreateContainer with log path %q", logPath), err, codes.InvalidArgument)
		if _, err := os.Stat(outside); err == nil {
			t.Errorf("log path %q created %s, outside the pod's log directory", logPath, outside)
			os.Remove(outside)
		}
	}
	// A path inside the directory, in a subdirectory, is fine.
	cfg := containerConfig("inside", env.BusyboxImage, idleCmd...)
	cfg.LogPath = "inside/0.log"
	id := c.createContainer(podID, pod, cfg)
	if got, want := c.containerStatus(id).LogPath, filepath.Join(pod.LogDirectory, "inside/0.log"); got != want {
		t.Errorf("log path %q, want %q", got, want)
	}
}
