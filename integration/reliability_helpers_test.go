//go:build linux

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The reliability tests restart crishim or containerd, so none of them is
// parallel: Go runs them before any parallel test resumes.

// tickerCmd prints a counter every 100 ms and exits 4 on SIGTERM: its log
// shows whether output was lost or duplicated across a restart.
var tickerCmd = []string{"sh", "-c", `trap "exit 4" TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done`}

// waiterCmd exits with code once the host creates <dir>/go, after marking
// <dir>/done; dir is mounted at /signal.
func waiterCmd(code int) []string {
	return []string{"sh", "-c", fmt.Sprintf(`trap "exit 0" TERM; while [ ! -e /signal/go ]; do sleep 0.1; done; touch /signal/done; exit %d`, code)}
}

// reconnect gives the client a fresh connection: after a restart, the old
// one may sit in gRPC's reconnect backoff for seconds. Connections are
// closed by the cleanup trackConns registered first.
func (c *client) reconnect() {
	c.t.Helper()
	crishim, _ := env.Crishim()
	conn, err := testenv.Dial(crishim.Socket)
	if err != nil {
		c.t.Fatalf("dial crishim: %v", err)
	}
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
	c.rt = runtime.NewRuntimeServiceClient(conn)
	c.img = runtime.NewImageServiceClient(conn)
}

// trackConns makes the test's own connections close after every other
// cleanup (cleanups run last-registered first).
func (c *client) trackConns() {
	c.t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, conn := range c.conns {
			conn.Close()
		}
	})
}

// parallel runs fn(i) for i in [0,n) on workers goroutines and returns the
// errors by index.
func parallel(n, workers int, fn func(i int) error) []error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

func firstErrors(errs []error, max int) []string {
	var out []string
	for i, err := range errs {
		if err != nil && len(out) < max {
			out = append(out, fmt.Sprintf("#%d: %v", i, err))
		}
	}
	return out
}

// startPodRaw runs a pod and starts containers in it without testing.T
// calls, for use from worker goroutines; the pod is registered for removal.
func (c *client) startPodRaw(ctx context.Context, pod *runtime.PodSandboxConfig, ctrs ...*runtime.ContainerConfig) (string, []string, error) {
	resp, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		return "", nil, fmt.Errorf("RunPodSandbox %s: %w", pod.Metadata.Name, err)
	}
	podID := resp.PodSandboxId
	c.mu.Lock()
	c.pods = append(c.pods, podID)
	c.mu.Unlock()
	var ids []string
	for _, cfg := range ctrs {
		cr, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		if err != nil {
			return podID, ids, fmt.Errorf("CreateContainer %s in %s: %w", cfg.Metadata.Name, pod.Metadata.Name, err)
		}
		if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			return podID, ids, fmt.Errorf("StartContainer %s in %s: %w", cfg.Metadata.Name, pod.Metadata.Name, err)
		}
		ids = append(ids, cr.ContainerId)
	}
	return podID, ids, nil
}

// removePodsAtEnd removes the pods in parallel when the test ends.
func (c *client) removePodsAtEnd(ids func() []string) {
	c.t.Cleanup(func() {
		// A slot whose RunPodSandbox failed holds no ID.
		var list []string
		for _, id := range ids() {
			if id != "" {
				list = append(list, id)
			}
		}
		errs := parallel(len(list), 4, func(i int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: list[i]}); err != nil {
				return err
			}
			_, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: list[i]})
			return err
		})
		if msgs := firstErrors(errs, 5); len(msgs) > 0 {
			c.t.Errorf("cleanup: removing pods: %s", strings.Join(msgs, "; "))
		}
	})
}

// podView and ctrView are what a restart must not change.
type podView struct {
	ID, Name, IP    string
	State           runtime.PodSandboxState
	CreatedAt       int64
	Labels, Annots  map[string]string
	RuntimeHandler  string
	AdditionalIPs   int
	NamespaceOption string
}

type ctrView struct {
	ID, PodID, Name, Image, LogPath, Reason string
	State                                   runtime.ContainerState
	ExitCode                                int32
	CreatedAt, StartedAt, FinishedAt        int64
	Labels, Annots                          map[string]string
}

// views lists the pods labelled test=<test name> and their containers.
func (c *client) views(ctx context.Context) (map[string]podView, map[string]ctrView, error) {
	pl, err := c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"test": c.t.Name()}}})
	if err != nil {
		return nil, nil, fmt.Errorf("ListPodSandbox: %w", err)
	}
	pods := map[string]podView{}
	for _, p := range pl.Items {
		st, err := c.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: p.Id})
		if err != nil {
			return nil, nil, fmt.Errorf("PodSandboxStatus %s: %w", p.Id, err)
		}
		s := st.Status
		pods[p.Id] = podView{ID: p.Id, Name: p.Metadata.Name, IP: s.GetNetwork().GetIp(), State: s.State, CreatedAt: s.CreatedAt,
			Labels: s.Labels, Annots: s.Annotations, RuntimeHandler: s.RuntimeHandler, AdditionalIPs: len(s.GetNetwork().GetAdditionalIps()),
			NamespaceOption: s.GetLinux().GetNamespaces().GetOptions().String()}
	}
	cl, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("ListContainers: %w", err)
	}
	ctrs := map[string]ctrView{}
	for _, ct := range cl.Containers {
		if _, ok := pods[ct.PodSandboxId]; !ok {
			continue
		}
		st, err := c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ct.Id})
		if err != nil {
			return nil, nil, fmt.Errorf("ContainerStatus %s: %w", ct.Id, err)
		}
		s := st.Status
		ctrs[ct.Id] = ctrView{ID: ct.Id, PodID: ct.PodSandboxId, Name: s.Metadata.Name, Image: s.GetImage().GetImage(), LogPath: s.LogPath,
			Reason: s.Reason, State: s.State, ExitCode: s.ExitCode, CreatedAt: s.CreatedAt, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
			Labels: s.Labels, Annots: s.Annotations}
	}
	return pods, ctrs, nil
}

// diffViews describes every difference between two snapshots, except for
// the containers in skip.
func diffViews(bp map[string]podView, bc map[string]ctrView, ap map[string]podView, ac map[string]ctrView, skip map[string]bool) []string {
	out := diffView("pod", bp, ap, func(p podView) string { return p.Name }, nil)
	out = append(out, diffView("container", bc, ac, func(c ctrView) string { return c.Name }, skip)...)
	sort.Strings(out)
	return out
}

// diffView describes what is gone, changed or new in after compared with
// before, skipping the IDs in skip.
func diffView[V any](kind string, before, after map[string]V, name func(V) string, skip map[string]bool) []string {
	var out []string
	for id, b := range before {
		if skip[id] {
			continue
		}
		a, ok := after[id]
		if !ok {
			out = append(out, kind+" "+name(b)+" "+id[:12]+" is gone")
			continue
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s %s changed:\n  before %+v\n  after  %+v", kind, name(b), b, a))
		}
	}
	for id := range after {
		if _, ok := before[id]; !ok {
			out = append(out, kind+" "+id[:12]+" appeared")
		}
	}
	return out
}

var tickRE = regexp.MustCompile(`^tick (\d+)$`)

// tickStats reads a ticker's log: the counters in order, and the gaps and
// repeats between consecutive ones.
type tickStats struct {
	n, last, gaps, repeats int
}

func readTicks(t *testing.T, path string) tickStats {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read log %s: %v", path, err)
		return tickStats{last: -1}
	}
	s := tickStats{last: -1}
	for _, line := range logLines(parseCRILog(t, data))["stdout"] {
		m := tickRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		switch {
		case s.n == 0 && v != 0:
			s.gaps++
		case s.n > 0 && v <= s.last:
			s.repeats++
		case s.n > 0 && v != s.last+1:
			s.gaps++
		}
		s.n++
		s.last = v
	}
	return s
}

// taskExit waits (polling containerd directly, crishim may be down) for the
// task of container id to stop and returns its exit status.
func taskExit(t *testing.T, id string, timeout time.Duration) (uint32, time.Time) {
	t.Helper()
	client, err := env.Containerd.Client(testenv.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), testenv.Namespace)
	deadline := time.Now().Add(timeout)
	for {
		c, err := client.LoadContainer(ctx, id)
		if err != nil {
			t.Fatalf("load container %s from containerd: %v", id, err)
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatalf("task of %s: %v", id, err)
		}
		st, err := task.Status(ctx)
		if err != nil {
			t.Fatalf("task status of %s: %v", id, err)
		}
		if st.Status == containerd.Stopped {
			return st.ExitStatus, st.ExitTime
		}
		if time.Now().After(deadline) {
			t.Fatalf("task of %s is %s after %s", id, st.Status, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containerdNS is a client of the test containerd and a context in
// crishim's namespace; done closes both.
func containerdNS(t *testing.T) (*containerd.Client, context.Context, func()) {
	t.Helper()
	client, err := env.Containerd.Client(testenv.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), testenv.Namespace), 30*time.Second)
	return client, ctx, func() { cancel(); client.Close() }
}

// containerdObjects lists crishim's containerd containers, active
// snapshots and leases, straight from containerd.
func containerdObjects(t *testing.T) (ctrs, snaps, leases []string) {
	t.Helper()
	client, ctx, done := containerdNS(t)
	defer done()
	list, err := client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		ctrs = append(ctrs, c.ID())
	}
	err = client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			snaps = append(snaps, info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := client.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		leases = append(leases, l.ID)
	}
	sort.Strings(ctrs)
	sort.Strings(snaps)
	return ctrs, snaps, leases
}

// netnsFiles lists crishim's network namespaces.
func netnsFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(env.CrishimState, "netns"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// journalEntries lists crishim's in-progress creation records.
func journalEntries() []string {
	var out []string
	for _, kind := range []string{"sandboxes", "containers"} {
		entries, _ := os.ReadDir(filepath.Join(env.CrishimRoot, "journal", kind))
		for _, e := range entries {
			out = append(out, kind+"/"+e.Name())
		}
	}
	return out
}

// fdCount is the number of open file descriptors of process pid.
func fdCount(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

// threadCount is the number of threads of process pid.
func threadCount(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// assertNoLeaks fails the test with whatever env.Leaks finds; only
// meaningful when no pod exists.
func assertNoLeaks(t *testing.T, when string) {
	t.Helper()
	leaks, err := env.Leaks()
	if err != nil {
		t.Fatal(err)
	}
	if ns := netnsFiles(); len(ns) > 0 {
		leaks = append(leaks, "netns files "+strings.Join(ns, " "))
	}
	if j := journalEntries(); len(j) > 0 {
		leaks = append(leaks, "journal entries "+strings.Join(j, " "))
	}
	if len(leaks) > 0 {
		t.Errorf("left behind %s:\n  %s", when, strings.Join(leaks, "\n  "))
	}
}

// crishimFilesOf lists what crishim keeps on disk for pod or container id
// that still exists.
func crishimFilesOf(id string) []string {
	var out []string
	for _, dir := range []string{
		filepath.Join(env.CrishimRoot, "sandboxes", id),
		filepath.Join(env.CrishimState, "sandboxes", id),
		filepath.Join(env.CrishimRoot, "containers", id),
		filepath.Join(env.CrishimState, "containers", id),
	} {
		if _, err := os.Stat(dir); err == nil {
			out = append(out, dir)
		}
	}
	return out
}

// assertPodGone fails the test when crishim still lists pod podID or any
// of ctrIDs, or keeps files for them.
func (c *client) assertPodGone(podID string, ctrIDs []string) {
	t := c.t
	t.Helper()
	pods, err := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Id == podID {
			t.Errorf("pod %s still listed (%v) after RemovePodSandbox", podID[:12], p.State)
		}
	}
	ctrs, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range ctrs.Containers {
		if ct.PodSandboxId == podID || contains(ctrIDs, ct.Id) {
			t.Errorf("container %s of pod %s still listed (%v) after RemovePodSandbox", ct.Id[:12], podID[:12], ct.State)
		}
	}
	for _, id := range append([]string{podID}, ctrIDs...) {
		if files := crishimFilesOf(id); len(files) > 0 {
			t.Errorf("crishim's files for %s left: %v", id[:12], files)
		}
	}
}

// podConfigNoT is podConfig for worker goroutines.
func podConfigNoT(name string) *runtime.PodSandboxConfig {
	uid := randomSuffix()
	logDir := filepath.Join(env.Dir, "pods", name+"-"+uid)
	_ = os.MkdirAll(logDir, 0o755)
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name + "-" + uid, Namespace: podNamespace, Uid: uid},
		Hostname:     "churn",
		LogDirectory: logDir,
		Labels:       map[string]string{"test": "churn"},
		Linux:        &runtime.LinuxPodSandboxConfig{},
	}
}

func freePortForDebug() (int, error) { return testenv.FreePort() }

// goroutines reads crishim's goroutine count from its pprof endpoint.
func goroutines(t *testing.T, port int) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", port))
	if err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatalf("goroutine profile: %v", err)
	}
	var n int
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile header %q: %v", line, err)
	}
	return n
}
