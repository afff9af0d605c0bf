package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/events"
	"github.com/crishim/crishim/internal/runtimeopts"
)

func podConfig(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name, Attempt: 2},
		Hostname: name + "-host",
		Labels:   map[string]string{"app": name},
	}
}

func TestValidateRejectsIncompleteMetadata(t *testing.T) {
	for name, cfg := range map[string]*runtime.PodSandboxConfig{
		"nil config":    nil,
		"nil metadata":  {},
		"no name":       {Metadata: &runtime.PodSandboxMetadata{Namespace: "ns", Uid: "u"}},
		"no namespace":  {Metadata: &runtime.PodSandboxMetadata{Name: "n", Uid: "u"}},
		"no uid":        {Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns"}},
		"bad host port": {Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u"}, PortMappings: []*runtime.PortMapping{{HostPort: 70000}}},
		"net sysctl on host network": {
			Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u"},
			Linux: &runtime.LinuxPodSandboxConfig{
				Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
				SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
				},
			},
		},
		"NUL in name":            {Metadata: &runtime.PodSandboxMetadata{Name: "a\x00b", Namespace: "ns", Uid: "u"}},
		"';' in namespace":       {Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns;K8S_POD_NAME=x", Uid: "u"}},
		"newline in uid":         {Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u\n"}},
		"empty sysctl":           withSysctl("", "1", false),
		"host sysctl":            withSysctl("vm.swappiness", "1", false),
		"bare net. sysctl":       withSysctl("net.", "1", false),
		"ipc sysctl on host IPC": withSysctl("kernel.shm_rmid_forced", "1", true),
	} {
		if err := validate(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: validate = %v, want InvalidArgument", name, err)
		}
	}
	if err := validate(podConfig("ok")); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
	for _, key := range []string{"net.core.somaxconn", "net/ipv4/ip_forward", "kernel.shm_rmid_forced", "fs.mqueue.msg_max"} {
		if err := validate(withSysctl(key, "1", false)); err != nil {
			t.Errorf("namespaced sysctl %s rejected: %v", key, err)
		}
	}
}

func withSysctl(key, value string, hostIPC bool) *runtime.PodSandboxConfig {
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u"},
		Linux:    &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{key: value}},
	}
	if hostIPC {
		cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE},
		}
	}
	return cfg
}

func TestNameKeyAndID(t *testing.T) {
	if got := nameKey(podConfig("web").Metadata); got != "web_ns_uid-web_2" {
		t.Errorf("nameKey = %q", got)
	}
	a, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newID()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a) || a == b {
		t.Errorf("ids %q %q: want distinct 64 hex chars", a, b)
	}
}

// withPods is a manager holding the given pods, as Run or Recover leave it.
func withPods(pods ...*pod) *Manager {
	m := New(nil, nil, nil, Config{Runtime: runtimeopts.RuncV2})
	for _, p := range pods {
		m.store.add(p)
		m.names.Add(p.name, p.id)
	}
	return m
}

func testPod(id, name string, ready bool, created time.Time) *pod {
	cfg := podConfig(name)
	cfg.Annotations = map[string]string{"a": "b"}
	state := stateNotReady
	if ready {
		state = stateReady
	}
	return &pod{id: id, name: nameKey(cfg.Metadata), cfg: cfg, state: state, createdAt: created,
		ip: "10.0.0.1", extraIPs: []string{"fd00::1"}, netnsPath: "/run/netns/x", dir: "/root/" + id}
}

func TestListFiltersByIDStateAndLabels(t *testing.T) {
	now := time.Now()
	m := withPods(
		testPod("aaa111", "web", true, now),
		testPod("aab222", "db", false, now.Add(time.Second)),
		testPod("bbb333", "web2", true, now.Add(2*time.Second)),
	)
	ready := &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}
	for _, tc := range []struct {
		filter *runtime.PodSandboxFilter
		want   string
	}{
		{nil, "aaa111,aab222,bbb333"},
		{&runtime.PodSandboxFilter{Id: "aab222"}, "aab222"},
		// Filters take full IDs: the server resolves prefixes.
		{&runtime.PodSandboxFilter{Id: "aa"}, ""},
		{&runtime.PodSandboxFilter{State: ready}, "aaa111,bbb333"},
		{&runtime.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, "aaa111"},
		{&runtime.PodSandboxFilter{Id: "aaa111", State: ready}, "aaa111"},
		{&runtime.PodSandboxFilter{Id: "aab222", State: ready}, ""},
		{&runtime.PodSandboxFilter{LabelSelector: map[string]string{"app": "none"}}, ""},
	} {
		list, err := m.List(context.Background(), tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range list {
			ids = append(ids, s.Id)
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("List(%v) = %s, want %s", tc.filter, got, tc.want)
		}
	}
}

func TestResolveIDAndGetReturnsCopy(t *testing.T) {
	m := withPods(testPod("aaa111", "web", true, time.Now()), testPod("aab222", "db", true, time.Now()))
	if _, err := m.ResolveID("aa"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ambiguous prefix: err = %v", err)
	}
	if _, err := m.ResolveID("zzz"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown id: err = %v", err)
	}
	if id, err := m.ResolveID("aab"); err != nil || id != "aab222" {
		t.Errorf("ResolveID(aab) = %q, %v", id, err)
	}
	// Past the server, IDs are full: a prefix names nothing.
	if _, err := m.Get("aab"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get of a prefix: err = %v, want not found", err)
	}
	s, err := m.Get("aab222")
	if err != nil || s.ID != "aab222" {
		t.Fatalf("Get(aab222) = %+v, %v", s, err)
	}
	s.Config.Metadata.Name = "changed"
	s.AdditionalIPs[0] = "changed"
	again, _ := m.Get("aab222")
	if again.Config.Metadata.Name != "db" || again.AdditionalIPs[0] != "fd00::1" {
		t.Error("changing a Get result changed the manager's pod")
	}
	if again.HostsPath() != "/root/aab222/hosts" {
		t.Errorf("HostsPath = %s", again.HostsPath())
	}
}

func TestStatusFromMemory(t *testing.T) {
	created := time.Unix(100, 5)
	p := testPod("aaa111", "web", true, created)
	p.cfg.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
	}}
	p.handler = "runc"
	m := withPods(p)
	st, info, err := m.Status(context.Background(), "aaa111", true)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.PodSandboxState_SANDBOX_READY || st.CreatedAt != created.UnixNano() ||
		st.Network.Ip != "10.0.0.1" || len(st.Network.AdditionalIps) != 1 || st.Network.AdditionalIps[0].Ip != "fd00::1" ||
		st.Linux.Namespaces.Options.Pid != runtime.NamespaceMode_POD || st.Metadata.Name != "web" ||
		st.Labels["app"] != "web" || st.Annotations["a"] != "b" || st.RuntimeHandler != "runc" {
		t.Errorf("status = %v", st)
	}
	for _, want := range []string{`"netNamespacePath":"/run/netns/x"`, `"config":`, `"hostname":"web-host"`} {
		if !strings.Contains(info["info"], want) {
			t.Errorf("verbose info lacks %s: %s", want, info["info"])
		}
	}
	p.mu.Lock()
	p.state = stateStopped
	p.mu.Unlock()
	st, info, _ = m.Status(context.Background(), "aaa111", false)
	if st.State != runtime.PodSandboxState_SANDBOX_NOTREADY || st.Network.Ip != "" || info != nil {
		t.Errorf("stopped pod status = %v, info %v", st, info)
	}
}

func TestResolvAndHostsRendering(t *testing.T) {
	got := string(renderResolvConf(&runtime.DNSConfig{
		Servers: []string{"10.96.0.10", "8.8.8.8"}, Searches: []string{"ns.svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5"},
	}))
	want := "search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"
	if got != want {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", got, want)
	}
	hosts := string(renderHosts("web-host", "10.1.2.3"))
	if !strings.HasPrefix(hosts, "127.0.0.1\tlocalhost\n") || !strings.HasSuffix(hosts, "10.1.2.3\tweb-host\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
	if strings.Contains(string(renderHosts("web-host", "")), "web-host") {
		t.Error("hosts names the pod before it has an IP")
	}
}

func TestWritePodFiles(t *testing.T) {
	dir := t.TempDir()
	hostFiles := t.TempDir()
	oldHosts, oldResolv := hostHostsFile, hostResolvFile
	hostHostsFile, hostResolvFile = filepath.Join(hostFiles, "hosts"), filepath.Join(hostFiles, "resolv.conf")
	t.Cleanup(func() { hostHostsFile, hostResolvFile = oldHosts, oldResolv })
	os.WriteFile(hostHostsFile, []byte("1.2.3.4 thehost\n"), 0o644)
	os.WriteFile(hostResolvFile, []byte("nameserver 9.9.9.9\n"), 0o644)

	// No DNS config: the host's resolv.conf; own network: generated hosts.
	cfg := podConfig("web")
	if err := writePodFiles(dir, cfg, "web-host"); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "hostname"), "web-host\n")
	assertFile(t, filepath.Join(dir, "resolv.conf"), "nameserver 9.9.9.9\n")
	if data, _ := os.ReadFile(filepath.Join(dir, "hosts")); !strings.Contains(string(data), "localhost") {
		t.Errorf("hosts = %q", data)
	}
	// Host network and DNS options: the host's hosts file, rendered resolv.conf.
	cfg.DnsConfig = &runtime.DNSConfig{Options: []string{"ndots:2"}}
	cfg.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
	}}
	if err := writePodFiles(dir, cfg, "thehost"); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "hosts"), "1.2.3.4 thehost\n")
	assertFile(t, filepath.Join(dir, "resolv.conf"), "options ndots:2\n")
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("pod dir holds %d entries, want 3 (no temp files left)", len(entries))
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || string(data) != want {
		t.Errorf("%s = %q, %v; want %q", path, data, err, want)
	}
}

func TestParseNumericUser(t *testing.T) {
	for in, want := range map[string][3]uint32{"": {0, 0, 1}, "65535": {65535, 0, 1}, "65535:65534": {65535, 65534, 1}} {
		u, g, ok := parseNumericUser(in)
		if u != want[0] || g != want[1] || !ok {
			t.Errorf("parseNumericUser(%q) = %d %d %v", in, u, g, ok)
		}
	}
	for _, in := range []string{"nobody", "1000:staff", "x:1"} {
		if _, _, ok := parseNumericUser(in); ok {
			t.Errorf("parseNumericUser(%q) claims numeric", in)
		}
	}
}

// buildSpec runs the pause spec options over containerd's default spec.
func buildSpec(t *testing.T, p pauseSpec) *oci.Spec {
	t.Helper()
	opts, err := p.specOpts()
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: p.ID}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func namespacesOf(s *oci.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		out[n.Type] = n.Path
	}
	return out
}

func basePauseSpec() pauseSpec {
	cfg := podConfig("web")
	cfg.Linux = &runtime.LinuxPodSandboxConfig{
		CgroupParent: "/kubepods/podweb",
		Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
		SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
		},
	}
	return pauseSpec{
		ID:           "abc",
		Config:       cfg,
		Image:        processImage{Args: []string{"/pause"}, User: "65535:65535"},
		NetNSPath:    "/run/crishim/netns/cni-1",
		Hostname:     "web-host",
		CgroupDriver: "cgroupfs",
		OOMFloor:     0,
	}
}

func TestPauseSpecPodNetwork(t *testing.T) {
	s := buildSpec(t, basePauseSpec())
	ns := namespacesOf(s)
	if ns[specs.NetworkNamespace] != "/run/crishim/netns/cni-1" {
		t.Errorf("network namespace = %q", ns[specs.NetworkNamespace])
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace, specs.PIDNamespace, specs.MountNamespace} {
		if path, ok := ns[typ]; !ok || path != "" {
			t.Errorf("%s namespace: present %v path %q, want a new one", typ, ok, path)
		}
	}
	if got := strings.Join(s.Process.Args, " "); got != "/pause" {
		t.Errorf("args = %q", got)
	}
	if s.Process.User.UID != 65535 || s.Process.User.GID != 65535 {
		t.Errorf("user = %+v", s.Process.User)
	}
	if s.Hostname != "web-host" {
		t.Errorf("hostname = %q", s.Hostname)
	}
	if s.Linux.CgroupsPath != "/kubepods/podweb/abc" {
		t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
	}
	if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("sysctls = %v", s.Linux.Sysctl)
	}
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj = %v, want clamped to the floor 0", s.Process.OOMScoreAdj)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privileges not set")
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp profile set though the pod asked for none")
	}
	if s.Root == nil || !s.Root.Readonly {
		t.Errorf("root = %+v, want read-only though the pod did not ask for it", s.Root)
	}
	for k, v := range map[string]string{
		annotationContainerType: "sandbox", annotationSandboxID: "abc",
		annotationSandboxName: "web", annotationSandboxNamespace: "ns", annotationSandboxUID: "uid-web",
	} {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
}

func TestPauseSpecHostNamespaces(t *testing.T) {
	p := basePauseSpec()
	p.NetNSPath = ""
	p.Config.Linux.Sysctls = nil
	p.Config.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{
		Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE,
	}
	s := buildSpec(t, p)
	ns := namespacesOf(s)
	for _, typ := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.UTSNamespace, specs.PIDNamespace, specs.IPCNamespace} {
		if _, ok := ns[typ]; ok {
			t.Errorf("%s namespace present for a host-namespace pod", typ)
		}
	}
	if _, ok := ns[specs.MountNamespace]; !ok {
		t.Error("mount namespace missing")
	}
	if s.Hostname != "" {
		t.Errorf("hostname %q set in the host's UTS namespace", s.Hostname)
	}
}

func TestPauseSpecSecurityContext(t *testing.T) {
	p := basePauseSpec()
	p.OOMFloor = -1000
	p.CgroupDriver = "systemd"
	p.Config.Linux.CgroupParent = "kubepods.slice"
	sc := p.Config.Linux.SecurityContext
	sc.RunAsUser = &runtime.Int64Value{Value: 1234}
	sc.RunAsGroup = &runtime.Int64Value{Value: 5678}
	sc.SupplementalGroups = []int64{10, 20}
	sc.ReadonlyRootfs = true
	sc.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	p.Config.Linux.Resources = &runtime.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 64 << 20}
	s := buildSpec(t, p)
	if s.Process.User.UID != 1234 || s.Process.User.GID != 5678 || len(s.Process.User.AdditionalGids) != 2 {
		t.Errorf("user = %+v", s.Process.User)
	}
	if !s.Root.Readonly {
		t.Error("root not read-only")
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp = %v, want the default profile", s.Linux.Seccomp)
	}
	if *s.Process.OOMScoreAdj != -998 {
		t.Errorf("oom_score_adj = %d, want -998 above a -1000 floor", *s.Process.OOMScoreAdj)
	}
	if s.Linux.CgroupsPath != "kubepods.slice:crishim:abc" {
		t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
	}
	if r := s.Linux.Resources; r.CPU == nil || *r.CPU.Shares != 2 || r.Memory == nil || *r.Memory.Limit != 64<<20 {
		t.Errorf("resources = %+v", r)
	}

	sc.Privileged = true
	s = buildSpec(t, p)
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 {
		t.Error("privileged pause still confined")
	}

	sc.Privileged = false
	sc.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "relative.json"}
	if _, err := p.specOpts(); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relative localhost profile: err = %v", err)
	}
	sc.Seccomp = nil
	sc.SeccompProfilePath = "bogus"
	if _, err := p.specOpts(); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown seccomp profile path: err = %v", err)
	}
}

func TestPauseSpecNeedsArgsAndNetNS(t *testing.T) {
	p := basePauseSpec()
	p.Image.Args = nil
	if _, err := p.specOpts(); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("image without args: err = %v", err)
	}
	p = basePauseSpec()
	p.NetNSPath = ""
	opts, err := p.specOpts()
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if _, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "abc"}, opts...); err == nil {
		t.Error("pod network without a netns path accepted")
	}
}

// An Unknown pod (its recovery incomplete) is listed NOTREADY with its
// address, and its verbose status says why.
func TestUnknownPodListedWithReason(t *testing.T) {
	p := testPod("ccc333", "lost", false, time.Unix(1, 0))
	p.ip = "10.0.0.9"
	m := withPods(p)
	m.unknown(p, errors.New("load pause task: containerd is away"))
	list, err := m.List(context.Background(), nil)
	if err != nil || len(list) != 1 || list[0].State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("List = %v, %v: want the pod NOTREADY", list, err)
	}
	st, info, err := m.Status(context.Background(), "ccc333", true)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.PodSandboxState_SANDBOX_NOTREADY || st.Network.Ip != "10.0.0.9" {
		t.Errorf("status = %v, want NOTREADY keeping its address", st)
	}
	for _, want := range []string{`"state":"unknown"`, `"recoveryError":"load pause task: containerd is away"`} {
		if !strings.Contains(info["info"], want) {
			t.Errorf("verbose info lacks %s: %s", want, info["info"])
		}
	}
	if sb, _ := m.Get("ccc333"); sb.Ready {
		t.Error("Get reports an Unknown pod ready: containers could be started in it")
	}
}

// publishedEvents records what the manager publishes.
type publishedEvents struct {
	mu  sync.Mutex
	got []runtime.ContainerEventType
}

func (r *publishedEvents) Publish(ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ev.Type)
}

// An Unknown pod's Stop leaves Unknown through the stop transition: it is
// counted Unknown until then, and its STOPPED event goes out once however
// often the stop completes and whoever (the exit watcher) saw it first.
func TestUnknownPodStopTransition(t *testing.T) {
	p := testPod("ddd444", "lost", false, time.Unix(1, 0))
	m := withPods(p)
	rec := &publishedEvents{}
	m.SetPublisher(rec)
	m.unknown(p, errors.New("containerd is away"))
	if n := m.Unknown(); n != 1 {
		t.Fatalf("Unknown() = %d with one Unknown pod", n)
	}
	for i := 0; i < 2; i++ {
		if err := m.stopped(context.Background(), p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if owned := m.pauseExited(p); !owned {
		t.Error("the exit watcher would report a pod whose stop completed")
	}
	if n := m.Unknown(); n != 0 {
		t.Errorf("Unknown() = %d after the pod's stop", n)
	}
	if st := p.getState(); st != stateStopped {
		t.Errorf("state %v after the stop, want stopped", st)
	}
	if fmt.Sprint(rec.got) != fmt.Sprint([]runtime.ContainerEventType{runtime.ContainerEventType_CONTAINER_STOPPED_EVENT}) {
		t.Errorf("published %v, want one STOPPED", rec.got)
	}
	if _, info, _ := m.Status(context.Background(), "ddd444", true); strings.Contains(info["info"], "recoveryError") {
		t.Errorf("a stopped pod still shows its recovery error: %s", info["info"])
	}
}
