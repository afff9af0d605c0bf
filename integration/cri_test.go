//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// podNamespace is the Kubernetes namespace of every test pod.
const podNamespace = "crishim-it"

// idleCmd runs until SIGTERM and then exits 0 at once. A shell is needed: a
// container's PID 1 ignores signals it installs no handler for.
var idleCmd = []string{"sh", "-c", `trap "exit 0" TERM; while true; do sleep 0.1; done`}

var (
	connOnce sync.Once
	conn     *grpc.ClientConn
	connErr  error

	// Tests' containers use these images, pulled once for all.
	pullOnce sync.Once
	pullErr  error
)

// client is a CRI client bound to one test.
type client struct {
	t   *testing.T
	rt  runtime.RuntimeServiceClient
	img runtime.ImageServiceClient

	mu   sync.Mutex
	pods []string // for picking this test's lines out of crishim's log
	// conns are the test's own connections (see reconnect).
	conns []*grpc.ClientConn
}

// newClient starts crishim if it is not running yet and connects to it.
func newClient(t *testing.T) *client {
	t.Helper()
	e := needEnv(t)
	if _, err := e.Crishim(); err != nil {
		t.Fatalf("crishim is not running: %v", err)
	}
	crishim, _ := e.Crishim()
	connOnce.Do(func() { conn, connErr = testenv.Dial(crishim.Socket) })
	if connErr != nil {
		t.Fatalf("dial crishim: %v", connErr)
	}
	c := &client{t: t, rt: runtime.NewRuntimeServiceClient(conn), img: runtime.NewImageServiceClient(conn)}
	t.Cleanup(func() {
		if err := crishim.Alive(); err != nil {
			t.Errorf("crishim died during the test: %v", err)
		}
		if t.Failed() {
			c.logPodLines(crishim.LogPath())
		}
	})
	pullOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, ref := range []string{e.BusyboxImage, e.StopSignalImage} {
			if _, err := c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
				pullErr = fmt.Errorf("pull %s: %w", ref, err)
				return
			}
		}
	})
	if pullErr != nil {
		t.Fatalf("test images: %v", pullErr)
	}
	return c
}

// ctx is a context for one RPC, bounded so a hung server fails the test.
func rpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomSuffix() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// podConfig returns a pod config with a unique name and a log directory of
// its own under the test directory.
func podConfig(t *testing.T, name string) *runtime.PodSandboxConfig {
	t.Helper()
	uid := randomSuffix()
	logDir := filepath.Join(env.Dir, "pods", name+"-"+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name + "-" + uid, Namespace: podNamespace, Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"test": t.Name()},
		Linux:        &runtime.LinuxPodSandboxConfig{},
	}
}

// runPod runs a pod and removes it when the test ends.
func (c *client) runPod(cfg *runtime.PodSandboxConfig) string {
	t := c.t
	t.Helper()
	resp, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	id := resp.PodSandboxId
	if id == "" {
		t.Fatalf("RunPodSandbox %s returned an empty ID", cfg.Metadata.Name)
	}
	c.mu.Lock()
	c.pods = append(c.pods, id)
	c.mu.Unlock()
	t.Cleanup(func() { c.removePod(id) })
	return id
}

// logPodLines shows the lines of crishim's log about this test's pods.
func (c *client) logPodLines(logPath string) {
	c.mu.Lock()
	pods := append([]string(nil), c.pods...)
	c.mu.Unlock()
	if len(pods) == 0 {
		return
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		c.t.Logf("crishim log: %v", err)
		return
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, id := range pods {
			if strings.Contains(line, id) {
				lines = append(lines, truncate(line, 400))
				break
			}
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	c.t.Logf("crishim log about pods %v (last %d lines):\n%s", pods, len(lines), strings.Join(lines, "\n"))
}

// removePod stops and removes a pod; both must succeed even when the test
// already did it.
func (c *client) removePod(id string) {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("cleanup: StopPodSandbox %s: %v", id, err)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("cleanup: RemovePodSandbox %s: %v", id, err)
	}
}

// containerConfig is a busybox container named name running cmd, logging
// to <name>.log in the pod's log directory.
func containerConfig(name, image string, cmd ...string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux:    &runtime.LinuxContainerConfig{},
	}
}

// createContainer creates a container and removes it when the test ends.
func (c *client) createContainer(podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t := c.t
	t.Helper()
	resp, err := c.rt.CreateContainer(rpcCtx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	id := resp.ContainerId
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("cleanup: RemoveContainer %s: %v", id, err)
		}
	})
	return id
}

// startContainer creates and starts a container and waits until it runs.
func (c *client) startContainer(podID string, pod *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t := c.t
	t.Helper()
	id := c.createContainer(podID, pod, cfg)
	if _, err := c.rt.StartContainer(rpcCtx(t), &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
	}
	st := c.containerStatus(id)
	if st.State != runtime.ContainerState_CONTAINER_RUNNING && st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Fatalf("container %s is %v right after StartContainer, want RUNNING (or EXITED for a short command)", cfg.Metadata.Name, st.State)
	}
	return id
}

func (c *client) containerStatus(id string) *runtime.ContainerStatus {
	t := c.t
	t.Helper()
	resp, err := c.rt.ContainerStatus(rpcCtx(t), &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	if resp.Status == nil {
		t.Fatalf("ContainerStatus %s: no status", id)
	}
	return resp.Status
}

func (c *client) podStatus(id string) *runtime.PodSandboxStatus {
	t := c.t
	t.Helper()
	resp, err := c.rt.PodSandboxStatus(rpcCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	if resp.Status == nil {
		t.Fatalf("PodSandboxStatus %s: no status", id)
	}
	return resp.Status
}

// waitContainerState polls until the container reaches state.
func (c *client) waitContainerState(id string, state runtime.ContainerState, timeout time.Duration) *runtime.ContainerStatus {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.containerStatus(id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %v after %s, want %v (reason %q, message %q)", id, st.State, timeout, state, st.Reason, st.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execSync runs cmd in a container and fails the test on an RPC error.
func (c *client) execSync(id string, timeout int64, cmd ...string) *runtime.ExecSyncResponse {
	t := c.t
	t.Helper()
	resp, err := c.rt.ExecSync(rpcCtx(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
	if err != nil {
		t.Fatalf("ExecSync %q in %s: %v", cmd, id, err)
	}
	return resp
}

// logRecord is one line of a CRI log file.
type logRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Message string
}

// parseCRILog parses the CRI log format, `<RFC3339Nano> <stream> <P|F> <message>`,
// and fails the test on any line that does not follow it.
func parseCRILog(t *testing.T, data []byte) []logRecord {
	t.Helper()
	var recs []logRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		parts := strings.SplitN(line, " ", 4)
		if len(parts) != 4 {
			t.Fatalf("log line %d %q: want `time stream tag message`", n, line)
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("log line %d %q: timestamp: %v", n, line, err)
		}
		if parts[1] != string(runtime.Stdout) && parts[1] != string(runtime.Stderr) {
			t.Fatalf("log line %d %q: stream %q", n, line, parts[1])
		}
		// The tag field may carry further ":"-separated tags after P or F.
		tag := strings.SplitN(parts[2], runtime.LogTagDelimiter, 2)[0]
		if tag != string(runtime.LogTagPartial) && tag != string(runtime.LogTagFull) {
			t.Fatalf("log line %d %q: tag %q", n, line, parts[2])
		}
		recs = append(recs, logRecord{Time: ts, Stream: parts[1], Partial: tag == string(runtime.LogTagPartial), Message: parts[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read log: %v", err)
	}
	return recs
}

// logLines joins partial records and returns each stream's lines.
func logLines(recs []logRecord) map[string][]string {
	lines := map[string][]string{}
	pending := map[string]string{}
	for _, r := range recs {
		pending[r.Stream] += r.Message
		if !r.Partial {
			lines[r.Stream] = append(lines[r.Stream], pending[r.Stream])
			pending[r.Stream] = ""
		}
	}
	// Output that ends without a newline stays partial (containerd's
	// convention too); a reader shows it all the same.
	for stream, rest := range pending {
		if rest != "" {
			lines[stream] = append(lines[stream], rest)
		}
	}
	return lines
}

// waitLog polls the container's log file until want accepts its lines.
func waitLog(t *testing.T, path string, timeout time.Duration, want func(map[string][]string) bool) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(path)
		var lines map[string][]string
		if err == nil {
			lines = logLines(parseCRILog(t, data))
			if want(lines) {
				return lines
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("log %s: %v", path, err)
			}
			var shown []string
			for _, line := range strings.SplitAfter(string(data), "\n") {
				shown = append(shown, truncate(line, 120))
			}
			t.Fatalf("log %s after %s does not have the expected lines; has (long lines cut):\n%s", path, timeout, strings.Join(shown, ""))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	nl := ""
	if strings.HasSuffix(s, "\n") {
		nl = "\n"
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s)) + nl
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// wantCode fails the test unless err carries the gRPC code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %v", what, want)
		return
	}
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v, want code %v", what, err, want)
	}
}
