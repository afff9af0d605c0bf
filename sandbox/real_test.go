package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/config"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/network"
	"github.com/crishim/crishim/internal/runtimeopts"
)

// The real-stack tests run pods on a private containerd and registry
// (testenv.Shared, set up by the first of them), in a containerd namespace
// of their own and on the environment's CNI bridge and subnet, which
// nothing else in this package uses.
const realNamespace = "crishim-sandbox-test"

// stack is the package's private containerd and registry.
var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

// pulledPause provides the pause image by pulling it from the test
// registry, standing in for the image service.
type pulledPause struct {
	client   *containerd.Client
	ref      string
	hostsDir string
	mu       sync.Mutex
}

func (p *pulledPause) EnsureSandboxImage(ctx context.Context, ref string) (*image.Local, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ref == "" {
		ref = p.ref
	}
	img, err := p.client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		hosts := config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(p.hostsDir)})
		img, err = p.client.Pull(ctx, ref, containerd.WithPullUnpack,
			containerd.WithResolver(docker.NewResolver(docker.ResolverOptions{Hosts: hosts})))
	}
	if err != nil {
		return nil, err
	}
	return &image.Local{Image: img, ID: img.Target().Digest.String(), Ref: ref}, nil
}

type realEnv struct {
	stack    *testenv.Env
	subnet   *net.IPNet
	m        *Manager
	client   *containerd.Client
	allocDir string
	netnsDir string
	cfg      Config
	net      *network.Manager
}

func setupReal(t *testing.T, extraPlugin string) *realEnv {
	t.Helper()
	stk := stack.Env(t)
	if err := stk.PushPauseImage(); err != nil {
		t.Fatal(err)
	}
	client, err := containerd.New(stk.Containerd.Address, containerd.WithDefaultNamespace(realNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	name := fmt.Sprintf("hlpsb-sandbox-%d", os.Getpid())
	realBridge, realSubnet := stk.Network.Bridge, stk.Network.Subnet.String()
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", realBridge).Run()
		os.RemoveAll(filepath.Join("/var/lib/cni/networks", name))
	})
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
	  {"type": "bridge", "bridge": %q, "isGateway": true,
	   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
	  {"type": "portmap", "capabilities": {"portMappings": true}}%s]}`, name, realBridge, realSubnet, extraPlugin)
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	netnsDir := t.TempDir()
	nm, err := network.New(network.Config{ConfDir: confDir, BinDirs: []string{"/usr/lib/cni", "/opt/cni/bin", failingPluginDir(t)}, NetNSDir: netnsDir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Root:         t.TempDir(),
		State:        t.TempDir(),
		SandboxImage: stk.PauseImage,
		CgroupDriver: "cgroupfs",
		Snapshotter:  "overlayfs",
		Runtime:      runtimeopts.RuncV2,
	}
	m := New(client, nil, nm, cfg)
	m.images = &pulledPause{client: client, ref: stk.PauseImage, hostsDir: stk.RegistryConfigDir}
	env := &realEnv{stack: stk, subnet: stk.Network.Subnet, m: m, client: client, allocDir: filepath.Join("/var/lib/cni/networks", name), netnsDir: netnsDir, cfg: cfg, net: nm}
	// Whatever a failing test leaves behind goes with it.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := m.List(ctx, nil)
		for _, s := range list {
			m.Remove(ctx, s.Id)
		}
	})
	return env
}

// failingPluginDir holds a CNI plugin that fails every ADD.
func failingPluginDir(t *testing.T) string {
	dir := t.TempDir()
	script := `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}';;
ADD) echo '{"cniVersion":"1.0.0","code":100,"msg":"hlpsb-fail refuses"}'; exit 1;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "hlpsb-fail"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (e *realEnv) allocations(t *testing.T) []string {
	entries, err := os.ReadDir(e.allocDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, en := range entries {
		if net.ParseIP(en.Name()) != nil {
			ips = append(ips, en.Name())
		}
	}
	return ips
}

func (e *realEnv) netnsFiles(t *testing.T) []string {
	entries, err := os.ReadDir(e.netnsDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

func isMounted(t *testing.T, path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func realPod(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "hlpsb", Uid: "uid-" + name},
		Hostname:     name,
		Labels:       map[string]string{"test": "hlpsb"},
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"hlpsb.svc"}},
		PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 18088}},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/hlpsb",
			SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
				Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			},
		},
	}
}

func TestRealPodLifecycle(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	cfg := realPod("life")
	id, err := e.m.Run(ctx, cfg, "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, err := e.m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Ready || !e.subnet.Contains(net.ParseIP(s.IP)) || s.PausePID == 0 {
		t.Fatalf("sandbox after Run = %+v", s)
	}
	if got := e.allocations(t); len(got) != 1 || got[0] != s.IP {
		t.Errorf("IP allocations = %v, want [%s]", got, s.IP)
	}
	// The pause runs /pause in the pod's network namespace. runc's start
	// returns once the process is released, which can be before its exec
	// of /pause has finished (cmdline reads empty meanwhile).
	var cmdline []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmdline, err = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PausePID))
		if err != nil || strings.HasPrefix(string(cmdline), "/pause") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !strings.HasPrefix(string(cmdline), "/pause") {
		t.Errorf("pause cmdline = %q, %v", cmdline, err)
	}
	var podNS, pauseNS os.FileInfo
	if podNS, err = os.Stat(s.NetNSPath); err != nil {
		t.Fatalf("netns: %v", err)
	}
	if pauseNS, err = os.Stat(fmt.Sprintf("/proc/%d/ns/net", s.PausePID)); err != nil || !os.SameFile(podNS, pauseNS) {
		t.Errorf("pause is not in the pod network namespace (%v)", err)
	}
	if !isMounted(t, s.ShmPath) {
		t.Errorf("shm %s not mounted", s.ShmPath)
	}
	hosts, _ := os.ReadFile(s.HostsPath())
	if !strings.Contains(string(hosts), s.IP+"\tlife\n") {
		t.Errorf("hosts file lacks the pod's address:\n%s", hosts)
	}
	resolv, _ := os.ReadFile(s.ResolvPath())
	if string(resolv) != "search hlpsb.svc\nnameserver 10.96.0.10\n" {
		t.Errorf("resolv.conf = %q", resolv)
	}
	st, info, err := e.m.Status(ctx, id, true)
	if err != nil || st.State != runtime.PodSandboxState_SANDBOX_READY || st.Network.Ip != s.IP || !strings.Contains(info["info"], `"pid":`) {
		t.Errorf("Status = %v, %v, %v", st, info, err)
	}
	c, err := e.client.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := c.Spec(ctx)
	if err != nil || spec.Annotations[annotationSandboxID] != id || spec.Linux.CgroupsPath != "/hlpsb/"+id {
		t.Errorf("pause spec annotations/cgroup = %v %q, %v", spec.Annotations, spec.Linux.CgroupsPath, err)
	}

	// Same pod again: refused, naming the existing sandbox.
	if _, err := e.m.Run(ctx, realPod("life"), ""); !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), id) {
		t.Errorf("duplicate Run = %v, want AlreadyExists naming %s", err, id)
	}

	// A restarted manager finds the pod as it was.
	fresh := New(e.client, nil, e.net, e.cfg)
	fresh.images = e.m.images
	if err := fresh.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := fresh.Get(id)
	if err != nil || !rs.Ready || rs.IP != s.IP || rs.PausePID != s.PausePID || rs.NetNSPath != s.NetNSPath {
		t.Errorf("recovered sandbox = %+v, %v; want %+v", rs, err, s)
	}
	if _, err := fresh.Run(ctx, realPod("life"), ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("recovered manager accepted a duplicate: %v", err)
	}

	if err := e.m.Stop(ctx, id); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st, _, _ = e.m.Status(ctx, id, false)
	if st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("state after Stop = %v", st.State)
	}
	if _, err := os.Stat(s.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("netns survives Stop: %v", err)
	}
	if got := e.allocations(t); len(got) != 0 {
		t.Errorf("IP allocations after Stop = %v", got)
	}
	if isMounted(t, s.ShmPath) {
		t.Error("shm still mounted after Stop")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PausePID)); !os.IsNotExist(err) {
		t.Errorf("pause process %d survives Stop", s.PausePID)
	}
	if err := e.m.Stop(ctx, id); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	if err := e.m.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := e.client.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("pause container survives Remove: %v", err)
	}
	if _, err := e.client.SnapshotService("overlayfs").Stat(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("pause snapshot survives Remove: %v", err)
	}
	for _, dir := range []string{s.Dir, filepath.Dir(s.ShmPath)} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s survives Remove", dir)
		}
	}
	if _, err := e.m.Get(id); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Remove = %v", err)
	}
	if err := e.m.Remove(ctx, id); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if got := e.netnsFiles(t); len(got) != 0 {
		t.Errorf("netns dir holds %v", got)
	}
	// The name is free again.
	id2, err := e.m.Run(ctx, realPod("life"), "")
	if err != nil {
		t.Fatalf("Run after Remove: %v", err)
	}
	if err := e.m.Remove(ctx, id2); err != nil {
		t.Fatal(err)
	}
}

func TestRealPauseExitMakesPodNotReady(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	id, err := e.m.Run(ctx, realPod("exit"), "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, _ := e.m.Get(id)
	if err := exec.Command("kill", "-KILL", fmt.Sprint(s.PausePID)).Run(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, _ = e.m.Get(id)
		if !s.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod still ready after its pause was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.m.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := e.allocations(t); len(got) != 0 {
		t.Errorf("IP allocations after Remove = %v", got)
	}
}

func TestRealHostNamespacesPod(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	cfg := realPod("hostns")
	cfg.PortMappings = nil
	cfg.DnsConfig = nil
	cfg.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{
		Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE,
	}
	id, err := e.m.Run(ctx, cfg, "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, _ := e.m.Get(id)
	if s.NetNSPath != "" || s.IP != "" || s.ShmPath != "/dev/shm" {
		t.Errorf("host-namespace sandbox = %+v", s)
	}
	for _, ns := range []string{"net", "ipc", "pid", "uts"} {
		self, _ := os.Readlink("/proc/self/ns/" + ns)
		pause, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", s.PausePID, ns))
		if err != nil || self != pause {
			t.Errorf("%s namespace of pause %q, ours %q (%v)", ns, pause, self, err)
		}
	}
	if err := e.m.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Errorf("host /dev/shm damaged: %v", err)
	}
}

func TestRealConcurrentRunsOfOnePod(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ids[i], errs[i] = e.m.Run(ctx, realPod("race"), "")
		}(i)
	}
	wg.Wait()
	var won []string
	for i, err := range errs {
		if err == nil {
			won = append(won, ids[i])
		} else if !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Errorf("losing Run: %v", err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d Runs succeeded, want 1", len(won))
	}
	list, _ := e.m.List(ctx, &runtime.PodSandboxFilter{LabelSelector: map[string]string{"test": "hlpsb"}})
	if len(list) != 1 {
		t.Errorf("List = %d sandboxes, want 1", len(list))
	}
	if err := e.m.Remove(ctx, won[0]); err != nil {
		t.Fatal(err)
	}
}

func TestRealFailedNetworkLeavesNothing(t *testing.T) {
	e := setupReal(t, `,{"type": "hlpsb-fail"}`)
	ctx := context.Background()
	_, err := e.m.Run(ctx, realPod("fail"), "")
	if err == nil || !strings.Contains(err.Error(), "hlpsb-fail refuses") {
		t.Fatalf("Run = %v, want the failing plugin's error", err)
	}
	if got := e.allocations(t); len(got) != 0 {
		t.Errorf("IP allocations after failed Run = %v", got)
	}
	if got := e.netnsFiles(t); len(got) != 0 {
		t.Errorf("netns left behind: %v", got)
	}
	list, err := e.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		info, _ := c.Info(ctx)
		if info.Labels[LabelKind] == KindSandbox {
			if rec, cfg, err := readRecord(info); err == nil && cfg.GetMetadata().GetName() == "fail" {
				t.Errorf("containerd container %s (%s) left behind", c.ID(), rec.GetName())
			}
		}
	}
	for _, root := range []string{e.cfg.Root, e.cfg.State} {
		if entries, _ := os.ReadDir(filepath.Join(root, "sandboxes")); len(entries) != 0 {
			t.Errorf("%s/sandboxes holds %d entries", root, len(entries))
		}
	}
	if other, ok := e.m.names.Add(nameKey(realPod("fail").Metadata), "probe"); !ok {
		t.Errorf("name still reserved for %s after failed Run", other)
	}
}

// The image service's own sandbox image (the embedded pause when no ref is
// configured) runs as a pod too.
func TestRealPodWithImageService(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	images := image.New(e.client, image.Config{RegistryConfigDir: e.stack.RegistryConfigDir, Snapshotter: "overlayfs", Root: t.TempDir()})
	cfg := e.cfg
	cfg.SandboxImage = ""
	m := New(e.client, images, e.net, cfg)
	id, err := m.Run(ctx, realPod("embedded"), "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { m.Remove(context.Background(), id) })
	s, err := m.Get(id)
	if err != nil || !s.Ready || s.IP == "" {
		t.Fatalf("sandbox = %+v, %v", s, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PausePID)); err != nil {
		t.Errorf("pause process: %v", err)
	}
	if err := m.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := e.allocations(t); len(got) != 0 {
		t.Errorf("IP allocations after Remove = %v", got)
	}
}

// TestRealCloseLeavesPodsRunning: closing the manager (crishim shutting
// down) ends its pause watchers and nothing else: the pause runs on, the pod
// stays ready, and a new manager finds it so.
func TestRealCloseLeavesPodsRunning(t *testing.T) {
	e := setupReal(t, "")
	ctx := context.Background()
	id, err := e.m.Run(ctx, realPod("close"), "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, _ := e.m.Get(id)
	e.m.Close() // returns once the watchers have
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PausePID)); err != nil {
		t.Fatalf("pause process %d after Close: %v", s.PausePID, err)
	}
	if s, err := e.m.Get(id); err != nil || !s.Ready {
		t.Fatalf("pod after Close: ready %v, %v", s != nil && s.Ready, err)
	}
	fresh := New(e.client, nil, e.net, e.cfg)
	fresh.images = e.m.images
	defer fresh.Close()
	if err := fresh.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if rs, err := fresh.Get(id); err != nil || !rs.Ready || rs.PausePID != s.PausePID {
		t.Fatalf("pod in a new manager = %+v, %v; want ready with pause %d", rs, err, s.PausePID)
	}
	if err := fresh.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}
