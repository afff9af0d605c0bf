package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/config"
	"github.com/containerd/containerd/snapshots"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/sandbox"
)

// These tests run real containers on a private containerd (testenv.Shared,
// set up by the first of them), without the sandbox and image packages:
// the pod is a host-network "sandbox" with no pause, and the test
// registry's busybox is pulled directly.
const testNamespace = "crishim-container-test"

// stack is the package's private containerd and registry.
var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

type fakeSandboxes struct{ sb *sandbox.Sandbox }

func (f fakeSandboxes) Get(id string) (*sandbox.Sandbox, error) {
	if id != f.sb.ID {
		return nil, errdefs.ErrNotFound
	}
	return f.sb, nil
}

type fakeImages struct{ img *image.Local }

func (f fakeImages) Get(_ context.Context, ref string) (*image.Local, error) {
	if ref != f.img.Ref {
		return nil, errdefs.ErrNotFound
	}
	return f.img, nil
}

func (f fakeImages) Name(_ context.Context, _ *image.Local, spec *runtime.ImageSpec) string {
	return spec.GetImage()
}

type env struct {
	m      *Manager
	client *containerd.Client
	ctx    context.Context
	pod    *runtime.PodSandboxConfig
	podID  string
	logDir string
	image  string
}

func setup(t *testing.T) *env {
	stk := stack.Env(t)
	testImage := stk.BusyboxImage
	client, err := containerd.New(stk.Containerd.Address, containerd.WithDefaultNamespace(testNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := namespaces.WithNamespace(context.Background(), testNamespace)

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(stk.RegistryConfigDir)}),
	})
	img, err := client.Pull(ctx, testImage, containerd.WithResolver(resolver), containerd.WithPullUnpack,
		containerd.WithPullSnapshotter("overlayfs"))
	if err != nil {
		t.Fatalf("pull %s: %v", testImage, err)
	}
	ispec, err := img.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local := &image.Local{Image: img, ID: img.Target().Digest.String(), Ref: testImage, Config: image.ImageConfig{
		Entrypoint: ispec.Config.Entrypoint, Cmd: ispec.Config.Cmd, Env: ispec.Config.Env,
		WorkingDir: ispec.Config.WorkingDir, User: ispec.Config.User, StopSignal: ispec.Config.StopSignal,
	}}

	root := t.TempDir()
	podDir := filepath.Join(root, "pod")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, "hosts"), []byte("127.0.0.1 localhost crishim-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pod := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "pod", Namespace: "test", Uid: newID()[:12]},
		LogDirectory: filepath.Join(root, "logs"),
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER},
		}},
	}
	sb := &sandbox.Sandbox{ID: newID(), Name: "pod", Config: pod, Dir: podDir, Ready: true}
	m := New(client, fakeImages{local}, fakeSandboxes{sb}, Config{
		Root: filepath.Join(root, "root"), State: filepath.Join(root, "state"),
		CgroupDriver: "cgroupfs", Snapshotter: "overlayfs", Runtime: "io.containerd.runc.v2",
	})
	e := &env{m: m, client: client, ctx: ctx, pod: pod, podID: sb.ID, logDir: pod.LogDirectory, image: testImage}
	t.Cleanup(func() {
		if err := m.RemovePod(context.Background(), sb.ID); err != nil {
			t.Errorf("remove pod containers: %v", err)
		}
	})
	return e
}

func (e *env) create(t *testing.T, name string, mutate func(*runtime.ContainerConfig), cmd ...string) string {
	t.Helper()
	cfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: e.image},
		Command:  cmd,
		LogPath:  name + "/0.log",
		Labels:   map[string]string{"test": name},
		Linux:    &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{OomScoreAdj: -999}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	id, err := e.m.Create(e.ctx, e.podID, cfg, e.pod)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return id
}

func (e *env) waitState(t *testing.T, id string, want runtime.ContainerState) *runtime.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, err := e.m.Status(e.ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s stayed %v, want %v", id, st.State, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestContainerdLifecycleAndLogs(t *testing.T) {
	e := setup(t)
	id := e.create(t, "logger", nil, "sh", "-c", "echo hello; echo oops >&2; printf tail")
	if _, err := e.m.Create(e.ctx, e.podID, &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "logger"}, Image: &runtime.ImageSpec{Image: e.image},
	}, e.pod); !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), id) {
		t.Fatalf("duplicate name: %v", err)
	}
	st, _, err := e.m.Status(e.ctx, id, false)
	if err != nil || st.State != runtime.ContainerState_CONTAINER_CREATED || st.ImageRef != e.image || st.User.GetLinux().GetUid() != 0 {
		t.Fatalf("status after create: %+v %v", st, err)
	}
	if err := e.m.Start(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(e.ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second start: %v", err)
	}
	st = e.waitState(t, id, runtime.ContainerState_CONTAINER_EXITED)
	if st.ExitCode != 0 || st.Reason != ReasonCompleted || st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Fatalf("exit status %+v", st)
	}
	entries := readLog(t, filepath.Join(e.logDir, "logger/0.log"))
	got := map[string]logEntry{}
	for _, le := range entries {
		got[le.msg] = le
	}
	if len(entries) != 3 || got["hello"].stream != "stdout" || got["hello"].tag != "F" ||
		got["oops"].stream != "stderr" || got["tail"].tag != "P" {
		t.Fatalf("log entries %+v", entries)
	}

	failing := e.create(t, "failing", nil, "sh", "-c", "exit 3")
	if err := e.m.Start(e.ctx, failing); err != nil {
		t.Fatal(err)
	}
	if st := e.waitState(t, failing, runtime.ContainerState_CONTAINER_EXITED); st.ExitCode != 3 || st.Reason != ReasonError {
		t.Fatalf("failing container status %+v", st)
	}

	broken := e.create(t, "broken", nil, "/no/such/binary")
	if err := e.m.Start(e.ctx, broken); err == nil {
		t.Fatal("start of a missing binary succeeded")
	}
	if st, _, _ := e.m.Status(e.ctx, broken, false); st.State != runtime.ContainerState_CONTAINER_EXITED || st.Reason != ReasonStartError || st.Message == "" {
		t.Fatalf("failed start status %+v", st)
	}

	list, err := e.m.List(e.ctx, &runtime.ContainerFilter{LabelSelector: map[string]string{"test": "failing"}})
	if err != nil || len(list) != 1 || list[0].Id != failing {
		t.Fatalf("list by label: %v %v", list, err)
	}
	list, _ = e.m.List(e.ctx, &runtime.ContainerFilter{PodSandboxId: e.podID, State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_EXITED}})
	if len(list) != 3 {
		t.Fatalf("list exited in pod: %d containers", len(list))
	}

	// A restarted manager sees the same containers and exits.
	m2 := New(e.client, e.m.images, e.m.sandboxes, e.m.cfg)
	if err := m2.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	st2, _, err := m2.Status(e.ctx, failing, false)
	if err != nil || st2.ExitCode != 3 || st2.Reason != ReasonError || st2.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Fatalf("recovered status %+v %v", st2, err)
	}

	if err := e.m.Remove(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.LoadContainer(e.ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("containerd container left behind: %v", err)
	}
	if _, err := e.client.SnapshotService("overlayfs").Stat(e.ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("snapshot left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.logDir, "logger/0.log")); err != nil {
		t.Fatalf("log file removed: %v", err)
	}
	if err := e.m.Remove(e.ctx, id); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, _, err := e.m.Status(e.ctx, id, false); !errdefs.IsNotFound(err) {
		t.Fatalf("status after remove: %v", err)
	}
}

func TestContainerdExecAndStop(t *testing.T) {
	e := setup(t)
	stubborn := e.create(t, "stubborn", nil, "sh", "-c", `trap "" TERM; echo ready; while true; do sleep 1; done`)
	polite := e.create(t, "polite", func(c *runtime.ContainerConfig) { c.StopSignal = runtime.Signal_SIGNAL_SIGUSR1 },
		"sh", "-c", `trap "exit 0" USR1; while true; do sleep 0.1; done`)
	for _, id := range []string{stubborn, polite} {
		if err := e.m.Start(e.ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	res, err := e.m.ExecSync(e.ctx, stubborn, []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, 0)
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 7 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	start := time.Now()
	_, err = e.m.ExecSync(e.ctx, stubborn, []string{"sleep", "30"}, 1)
	if !errdefs.IsDeadlineExceeded(err) || status.Code(errdefs.ToGRPC(err)) != codes.DeadlineExceeded {
		t.Fatalf("exec timeout: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("exec timeout took %v", d)
	}
	if dirs, _ := os.ReadDir(filepath.Join(e.m.fifoDir(stubborn), "exec")); len(dirs) != 0 {
		t.Fatalf("exec fifos left behind: %v", dirs)
	}

	// The polite container exits on its custom stop signal, well before
	// the grace period.
	start = time.Now()
	if err := e.m.Stop(e.ctx, polite, 30); err != nil {
		t.Fatal(err)
	}
	st, _, _ := e.m.Status(e.ctx, polite, false)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 || time.Since(start) > 10*time.Second {
		t.Fatalf("graceful stop: %+v after %v", st, time.Since(start))
	}

	// The stubborn one is killed at the deadline; two concurrent stops,
	// the second one shorter, end together at the shorter deadline.
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.m.Stop(ctx, stubborn, 60) //nolint:errcheck // cancelled on purpose
	}()
	waitUntil(t, func() bool { return e.m.stopper.Stopping(stubborn) })
	cancel()
	start = time.Now()
	if err := e.m.Stop(e.ctx, stubborn, 2); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	d := time.Since(start)
	st, _, _ = e.m.Status(e.ctx, stubborn, false)
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != ReasonError {
		t.Fatalf("killed container status %+v", st)
	}
	if d < 1500*time.Millisecond || d > 8*time.Second {
		t.Fatalf("stop with 2s grace took %v", d)
	}
	if err := e.m.Stop(e.ctx, stubborn, 2); err != nil {
		t.Fatalf("stop of an exited container: %v", err)
	}
	if _, err := e.m.ExecSync(e.ctx, stubborn, []string{"true"}, 0); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("exec in exited container: %v", err)
	}
	if lines := readLog(t, filepath.Join(e.logDir, "stubborn/0.log")); len(lines) == 0 || lines[0].msg != "ready" {
		t.Fatalf("stubborn log %+v", lines)
	}
}

// logEntry is one line of a CRI log file.
type logEntry struct {
	stream, tag, msg string
}

// readLog parses the CRI log file at path, failing the test on a line
// that is not "<RFC3339Nano time> <stream> <tag> <message>".
func readLog(t *testing.T, path string) []logEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logEntry
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed log line %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Fatalf("bad timestamp in %q: %v", line, err)
		}
		out = append(out, logEntry{stream: parts[1], tag: parts[2], msg: parts[3]})
	}
	return out
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A create that fails inside containerd's NewContainer, after the
// writable snapshot was prepared (the spec is generated after it), takes
// back every step: no snapshot, containerd container, journal entry or
// name is left.
func TestContainerdFailedCreateLeavesNothing(t *testing.T) {
	e := setup(t)
	sn := e.client.SnapshotService("overlayfs")
	snapshotsNow := func() map[string]bool {
		t.Helper()
		keys := map[string]bool{}
		if err := sn.Walk(e.ctx, func(_ context.Context, info snapshots.Info) error {
			keys[info.Name] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	before := snapshotsNow()
	cfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "nodevice"},
		Image:    &runtime.ImageSpec{Image: e.image},
		Command:  []string{"true"},
		// Accepted by validation; spec generation fails to stat it.
		Devices: []*runtime.Device{{HostPath: "/dev/crishim-no-such-device", ContainerPath: "/dev/x", Permissions: "rwm"}},
	}
	if id, err := e.m.Create(e.ctx, e.podID, cfg, e.pod); err == nil {
		t.Fatalf("Create with a missing device = %s, want an error", id)
	}
	for key := range snapshotsNow() {
		if !before[key] {
			t.Errorf("snapshot %s left behind", key)
		}
	}
	list, err := e.client.ContainerService().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Labels[LabelSandboxID] == e.podID {
			t.Errorf("containerd container %s left behind", c.ID)
		}
	}
	if ids, err := e.m.journal.Entries(); err != nil || len(ids) != 0 {
		t.Errorf("journal entries %v, %v; want none", ids, err)
	}
	cfg.Devices = nil
	if _, err := e.m.Create(e.ctx, e.podID, cfg, e.pod); err != nil {
		t.Errorf("name still taken after the failed create: %v", err)
	}
}

// TestContainerdCloseLeavesContainersRunning: closing the manager (crishim
// shutting down) ends its exit monitors and nothing else: the task runs on,
// the container is still recorded running, and a new manager finds it so.
func TestContainerdCloseLeavesContainersRunning(t *testing.T) {
	e := setup(t)
	id := e.create(t, "sleeper", nil, "sleep", "1000")
	if err := e.m.Start(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	e.m.Close() // returns once the monitors have
	resp, err := e.client.TaskService().Get(e.ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil || resp.GetProcess().GetStatus() != tasktypes.Status_RUNNING {
		t.Fatalf("task after Close: %v, %v; want running", resp.GetProcess().GetStatus(), err)
	}
	if st, _, err := e.m.Status(e.ctx, id, false); err != nil || st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("status after Close: %v, %v; want running", st.GetState(), err)
	}
	m2 := New(e.client, e.m.images, e.m.sandboxes, e.m.cfg)
	defer m2.Close()
	if err := m2.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	if st, _, err := m2.Status(e.ctx, id, false); err != nil || st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("status in a new manager: %v, %v; want running", st.GetState(), err)
	}
	if err := m2.RemovePod(e.ctx, e.podID); err != nil {
		t.Fatal(err)
	}
}

// TestContainerdUsersFromImageCopy: spec generation resolves users from one
// copy of the image's user database per image (internal/userdb), not by
// mounting each new container's snapshot, and still answers as containerd's
// resolution does.
func TestContainerdUsersFromImageCopy(t *testing.T) {
	e := setup(t)
	before := e.m.users.Fills()
	asUser := func(uid int64) func(*runtime.ContainerConfig) {
		return func(cfg *runtime.ContainerConfig) {
			cfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{RunAsUser: &runtime.Int64Value{Value: uid}}
		}
	}
	for i, uid := range []int64{1000, 4242} {
		id := e.create(t, fmt.Sprintf("user%d", i), asUser(uid), "true")
		c, err := e.client.LoadContainer(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := c.Spec(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The test image has no /etc/passwd: the numeric user keeps
		// group 0, as containerd's own look-up gives it.
		if u := spec.Process.User; u.UID != uint32(uid) || u.GID != 0 {
			t.Errorf("container as %d: spec user %+v, want uid %d gid 0", uid, u, uid)
		}
	}
	cfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "username"},
		Image:    &runtime.ImageSpec{Image: e.image},
		Command:  []string{"true"},
		Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			RunAsUsername: "nosuch",
		}},
	}
	if id, err := e.m.Create(e.ctx, e.podID, cfg, e.pod); err == nil {
		t.Errorf("Create as a user the image does not know = %s, want an error", id)
	}
	if got := e.m.users.Fills() - before; got != 1 {
		t.Errorf("image user database copied %d times for three containers of one image, want 1", got)
	}
}
