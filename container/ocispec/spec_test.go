package ocispec

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/sandbox"
)

// fixture is a container config in a pod whose pause runs as PID 4242,
// with a rootfs holding passwd and group files.
type fixture struct {
	in     Input
	rootfs string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	rootfs := filepath.Join(root, "rootfs")
	must(t, os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte(
		"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte(
		"root:x:0:\nappgrp:x:1001:\nextra:x:2000:app\nother:x:3000:root\n"), 0o644))
	podDir := filepath.Join(root, "pod")
	must(t, os.MkdirAll(podDir, 0o755))
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		must(t, os.WriteFile(filepath.Join(podDir, f), nil, 0o644))
	}
	pod := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1", Attempt: 0},
		Hostname: "web-host",
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/besteffort/poduid-1",
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}},
		},
	}
	return &fixture{
		rootfs: rootfs,
		in: Input{
			ID: "c1",
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: "app"},
				Image:    &runtime.ImageSpec{Image: "busybox"},
				Linux:    &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{}},
			},
			Sandbox: &sandbox.Sandbox{
				ID: "pod1", Config: pod, PausePID: 4242, NetNSPath: "/run/netns/cni-1",
				Dir: podDir, ShmPath: filepath.Join(root, "shm"), Ready: true,
			},
			Image:        image.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd"}, Env: []string{"PATH=/img/bin", "A=image"}},
			ImageName:    "busybox:latest",
			AllCaps:      []string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_KILL"},
			CgroupDriver: "cgroupfs",
			Hostname:     "node-1",
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) sc() *runtime.LinuxContainerSecurityContext {
	return f.in.Config.Linux.SecurityContext
}

func (f *fixture) spec(t *testing.T) *specs.Spec {
	t.Helper()
	s, err := f.trySpec()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) trySpec() (*specs.Spec, error) {
	opts, err := Opts(f.in)
	if err != nil {
		return nil, err
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	all := append([]oci.SpecOpts{oci.WithRootFSPath(f.rootfs)}, opts...)
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: f.in.ID}, all...)
}

func TestProcessArgsKubernetesRules(t *testing.T) {
	img := image.ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"cmd1", "cmd2"}}
	cases := []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/entry", "-x", "cmd1", "cmd2"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{[]string{"/bin/sh"}, []string{"-c", "true"}, []string{"/bin/sh", "-c", "true"}},
		{nil, []string{"a1"}, []string{"/entry", "-x", "a1"}},
	}
	for _, c := range cases {
		got, err := processArgs(&runtime.ContainerConfig{Command: c.command, Args: c.args}, img)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("command %v args %v: got %v, %v; want %v", c.command, c.args, got, err, c.want)
		}
	}
	if _, err := processArgs(&runtime.ContainerConfig{}, image.ImageConfig{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command at all: %v, want InvalidArgument", err)
	}
}

func TestSpecProcessBasics(t *testing.T) {
	f := newFixture(t)
	f.in.Config.Envs = []*runtime.KeyValue{{Key: "A", Value: []byte("cri")}, {Key: "B", Value: []byte("b=c")}}
	f.in.Config.Tty = true
	f.in.Image.WorkingDir = "/img"
	s := f.spec(t)
	if !reflect.DeepEqual(s.Process.Args, []string{"/entry", "cmd"}) {
		t.Errorf("args = %v", s.Process.Args)
	}
	env := map[string]string{}
	for _, e := range s.Process.Env {
		k, v, _ := strings.Cut(e, "=")
		if _, dup := env[k]; dup {
			t.Errorf("variable %s repeated in %v", k, s.Process.Env)
		}
		env[k] = v
	}
	for k, want := range map[string]string{"PATH": "/img/bin", "A": "cri", "B": "b=c", "HOSTNAME": "web-host", "TERM": "xterm"} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q (env %v)", k, env[k], want, s.Process.Env)
		}
	}
	if s.Process.Cwd != "/img" || !s.Process.Terminal {
		t.Errorf("cwd %q terminal %v", s.Process.Cwd, s.Process.Terminal)
	}
	if s.Process.NoNewPrivileges || s.Process.Rlimits != nil {
		t.Errorf("default security leaked: nnp=%v rlimits=%v", s.Process.NoNewPrivileges, s.Process.Rlimits)
	}
	if s.Linux.Seccomp != nil {
		t.Errorf("seccomp set without a profile request")
	}
	for _, m := range s.Mounts {
		if m.Destination == "/run" {
			t.Errorf("default /run tmpfs kept")
		}
	}
	f.in.Config.WorkingDir = "/cri"
	if s := f.spec(t); s.Process.Cwd != "/cri" {
		t.Errorf("CRI working dir ignored: %q", s.Process.Cwd)
	}
}

func TestSpecUser(t *testing.T) {
	cases := []struct {
		name      string
		setup     func(f *fixture)
		uid, gid  uint32
		addGroups []uint32
	}{
		{"default root", func(f *fixture) {}, 0, 0, []uint32{0, 3000}},
		{"username", func(f *fixture) { f.sc().RunAsUsername = "app" }, 1000, 1001, []uint32{1001, 2000}},
		{"uid from passwd", func(f *fixture) { f.sc().RunAsUser = &runtime.Int64Value{Value: 1000} }, 1000, 1001, []uint32{1001, 2000}},
		{"uid and group", func(f *fixture) {
			f.sc().RunAsUser = &runtime.Int64Value{Value: 1000}
			f.sc().RunAsGroup = &runtime.Int64Value{Value: 5000}
		}, 1000, 5000, []uint32{5000, 2000}},
		{"unknown uid", func(f *fixture) { f.sc().RunAsUser = &runtime.Int64Value{Value: 777} }, 777, 0, []uint32{0}},
		{"image user", func(f *fixture) { f.in.Image.User = "app" }, 1000, 1001, []uint32{1001, 2000}},
		{"cri beats image", func(f *fixture) {
			f.in.Image.User = "app"
			f.sc().RunAsUser = &runtime.Int64Value{Value: 0}
		}, 0, 0, []uint32{0, 3000}},
		{"supplemental", func(f *fixture) {
			f.sc().RunAsUsername = "app"
			f.sc().SupplementalGroups = []int64{7000, 2000}
		}, 1000, 1001, []uint32{1001, 2000, 7000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.setup(f)
			u := f.spec(t).Process.User
			if u.UID != c.uid || u.GID != c.gid {
				t.Fatalf("uid:gid = %d:%d, want %d:%d", u.UID, u.GID, c.uid, c.gid)
			}
			got := slices.Clone(u.AdditionalGids)
			slices.Sort(got)
			want := slices.Clone(c.addGroups)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("additional gids = %v, want %v", u.AdditionalGids, c.addGroups)
			}
		})
	}

	f := newFixture(t)
	f.sc().RunAsUsername = "nobody-here"
	if _, err := f.trySpec(); err == nil {
		t.Error("unknown username accepted")
	}
	f = newFixture(t)
	f.sc().RunAsGroup = &runtime.Int64Value{Value: 5}
	if _, err := Opts(f.in); !errdefs.IsInvalidArgument(err) {
		t.Errorf("group without user: %v", err)
	}
}

func mountAt(s *specs.Spec, dst string) []specs.Mount {
	var out []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == dst {
			out = append(out, m)
		}
	}
	return out
}

func TestSpecMounts(t *testing.T) {
	f := newFixture(t)
	base := t.TempDir()
	missing := filepath.Join(base, "not", "yet")
	f.in.Config.Mounts = []*runtime.Mount{
		{ContainerPath: "/data/sub", HostPath: filepath.Join(base, "sub"), Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		{ContainerPath: "/data", HostPath: missing, Readonly: true},
		{ContainerPath: "/slave", HostPath: base, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{ContainerPath: "/etc/hosts", HostPath: filepath.Join(base, "myhosts")},
	}
	must(t, os.WriteFile(filepath.Join(base, "myhosts"), nil, 0o644))
	s := f.spec(t)
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Fatalf("missing mount source not created: %v", err)
	}
	check := func(dst, src string, opts ...string) {
		t.Helper()
		ms := mountAt(s, dst)
		if len(ms) != 1 {
			t.Fatalf("%d mounts at %s, want 1", len(ms), dst)
		}
		if ms[0].Source != src || ms[0].Type != "bind" || !reflect.DeepEqual(ms[0].Options, opts) {
			t.Fatalf("mount %s = %+v, want source %s options %v", dst, ms[0], src, opts)
		}
	}
	check("/data", missing, "rbind", "rprivate", "ro")
	check("/data/sub", filepath.Join(base, "sub"), "rbind", "rshared", "rw")
	check("/slave", base, "rbind", "rslave", "rw")
	check("/etc/hosts", filepath.Join(base, "myhosts"), "rbind", "rprivate", "rw")
	check("/etc/hostname", f.in.Sandbox.HostnamePath(), "rbind", "rprivate", "rw")
	check("/etc/resolv.conf", f.in.Sandbox.ResolvPath(), "rbind", "rprivate", "rw")
	check("/dev/shm", f.in.Sandbox.ShmPath, "rbind", "rprivate", "rw")
	if s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("rootfs propagation %q, want rshared", s.Linux.RootfsPropagation)
	}
	var order []string
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/data") {
			order = append(order, m.Destination)
		}
	}
	if !reflect.DeepEqual(order, []string{"/data", "/data/sub"}) {
		t.Errorf("mount order %v: parent must come first", order)
	}

	// Read-only rootfs makes the pod files read-only too; host IPC uses
	// the host's /dev/shm.
	f = newFixture(t)
	f.sc().ReadonlyRootfs = true
	f.sc().NamespaceOptions = &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}
	s = f.spec(t)
	if !s.Root.Readonly {
		t.Error("rootfs not read-only")
	}
	if ms := mountAt(s, "/etc/hosts"); len(ms) != 1 || !slices.Contains(ms[0].Options, "ro") {
		t.Errorf("/etc/hosts %+v not read-only", ms)
	}
	if ms := mountAt(s, "/dev/shm"); len(ms) != 1 || ms[0].Source != "/dev/shm" {
		t.Errorf("host IPC /dev/shm = %+v", ms)
	}

	f = newFixture(t)
	f.in.Config.Mounts = []*runtime.Mount{{ContainerPath: "rel", HostPath: base}}
	if _, err := f.trySpec(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative container path: %v", err)
	}
}

func TestSpecCapabilities(t *testing.T) {
	caps := func(add, drop []string) []string {
		f := newFixture(t)
		f.sc().Capabilities = &runtime.Capability{AddCapabilities: add, DropCapabilities: drop}
		s := f.spec(t)
		c := s.Process.Capabilities
		if !reflect.DeepEqual(c.Bounding, c.Effective) || !reflect.DeepEqual(c.Bounding, c.Permitted) {
			t.Fatalf("capability sets differ: %+v", c)
		}
		return c.Bounding
	}
	got := caps([]string{"net_admin", "CAP_SYS_ADMIN"}, []string{"KILL", "cap_chown"})
	if !slices.Contains(got, "CAP_NET_ADMIN") || !slices.Contains(got, "CAP_SYS_ADMIN") ||
		slices.Contains(got, "CAP_KILL") || slices.Contains(got, "CAP_CHOWN") || !slices.Contains(got, "CAP_SETUID") {
		t.Errorf("add/drop gave %v", got)
	}
	if got := caps([]string{"ALL"}, []string{"CHOWN"}); !reflect.DeepEqual(got, []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_KILL"}) {
		t.Errorf("add ALL drop CHOWN gave %v", got)
	}
	if got := caps([]string{"NET_RAW"}, []string{"ALL"}); !reflect.DeepEqual(got, []string{"CAP_NET_RAW"}) {
		t.Errorf("drop ALL add NET_RAW gave %v", got)
	}
}

func TestSpecPrivileged(t *testing.T) {
	f := newFixture(t)
	f.sc().Privileged = true
	f.sc().Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	if _, err := Opts(f.in); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("privileged container in unprivileged pod: %v", err)
	}
	f.in.Sandbox.Config.Linux.SecurityContext.Privileged = true
	s := f.spec(t)
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged keeps masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if s.Linux.Seccomp != nil {
		t.Error("privileged container got a seccomp profile")
	}
	for _, m := range mountAt(s, "/sys") {
		if slices.Contains(m.Options, "ro") {
			t.Errorf("sysfs read-only for privileged: %v", m.Options)
		}
	}
	if len(s.Process.Capabilities.Bounding) < 10 {
		t.Errorf("privileged capabilities %v", s.Process.Capabilities.Bounding)
	}
	allowAll := false
	for _, d := range s.Linux.Resources.Devices {
		allowAll = allowAll || (d.Allow && d.Access == "rwm" && d.Type == "")
	}
	if !allowAll {
		t.Errorf("privileged device cgroup %+v does not allow all", s.Linux.Resources.Devices)
	}
}

func TestSpecMaskedPaths(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t)
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("defaults missing: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	f.sc().MaskedPaths = []string{"/proc/x"}
	f.sc().ReadonlyPaths = []string{"/proc/y"}
	s = f.spec(t)
	if !reflect.DeepEqual(s.Linux.MaskedPaths, []string{"/proc/x"}) || !reflect.DeepEqual(s.Linux.ReadonlyPaths, []string{"/proc/y"}) {
		t.Errorf("CRI paths not used: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestSpecResourcesAndOOMClamp(t *testing.T) {
	f := newFixture(t)
	f.in.OwnOOMScoreAdj = -500
	f.in.Cgroups.Hugetlb = true
	f.in.Config.Linux.Resources = &runtime.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
		MemorySwapLimitInBytes: 128 << 20, CpusetCpus: "0", CpusetMems: "0", OomScoreAdj: -998,
		HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
		Unified:        map[string]string{"memory.high": "1"},
	}
	s := f.spec(t)
	r := s.Linux.Resources
	if *r.CPU.Period != 100000 || *r.CPU.Quota != 50000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" || r.CPU.Mems != "0" {
		t.Errorf("cpu %+v", r.CPU)
	}
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 {
		t.Errorf("memory %+v", r.Memory)
	}
	if len(r.HugepageLimits) != 1 || r.HugepageLimits[0].Pagesize != "2MB" {
		t.Errorf("hugepages %+v", r.HugepageLimits)
	}
	f.in.Cgroups.Hugetlb = false
	if r := f.spec(t).Linux.Resources; len(r.HugepageLimits) != 0 || *r.Memory.Limit != 64<<20 {
		t.Errorf("without a usable hugetlb controller: hugepages %+v, memory %+v; want none and the limit", r.HugepageLimits, r.Memory)
	}
	if r.Unified != nil {
		t.Errorf("unified set on cgroup v1: %v", r.Unified)
	}
	if *s.Process.OOMScoreAdj != -500 {
		t.Errorf("oom_score_adj %d, want clamped to -500", *s.Process.OOMScoreAdj)
	}
	if s.Linux.CgroupsPath != "/kubepods/besteffort/poduid-1/c1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	f.in.CgroupDriver = "systemd"
	f.in.Sandbox.Config.Linux.CgroupParent = "kubepods-besteffort-poduid1.slice"
	if s := f.spec(t); s.Linux.CgroupsPath != "kubepods-besteffort-poduid1.slice:crishim:c1" {
		t.Errorf("systemd cgroups path %q", s.Linux.CgroupsPath)
	}
}

func namespacesOf(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		out[n.Type] = n.Path
	}
	return out
}

func TestSpecNamespaces(t *testing.T) {
	f := newFixture(t)
	f.sc().NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}
	ns := namespacesOf(f.spec(t))
	want := map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: "/run/netns/cni-1", specs.UTSNamespace: "/proc/4242/ns/uts",
		specs.IPCNamespace: "/proc/4242/ns/ipc", specs.PIDNamespace: "/proc/4242/ns/pid", specs.MountNamespace: "",
	}
	if !reflect.DeepEqual(ns, want) {
		t.Errorf("POD namespaces %v, want %v", ns, want)
	}

	f.sc().NamespaceOptions = &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE}
	ns = namespacesOf(f.spec(t))
	if !reflect.DeepEqual(ns, map[specs.LinuxNamespaceType]string{specs.MountNamespace: ""}) {
		t.Errorf("host namespaces %v", ns)
	}

	f.sc().NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	f.in.Sandbox.NetNSPath = ""
	ns = namespacesOf(f.spec(t))
	if p, ok := ns[specs.PIDNamespace]; !ok || p != "" {
		t.Errorf("CONTAINER pid namespace %q present=%v, want a new one", p, ok)
	}
	if ns[specs.NetworkNamespace] != "/proc/4242/ns/net" {
		t.Errorf("net without netns path: %q", ns[specs.NetworkNamespace])
	}

	f.sc().NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "other"}
	if _, err := Opts(f.in); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("TARGET without a running target: %v", err)
	}
	f.in.TargetPID = 99
	if ns := namespacesOf(f.spec(t)); ns[specs.PIDNamespace] != "/proc/99/ns/pid" {
		t.Errorf("TARGET pid namespace %q", ns[specs.PIDNamespace])
	}

	// No container options: the pod's apply.
	f.sc().NamespaceOptions = nil
	f.in.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}
	if ns := namespacesOf(f.spec(t)); ns[specs.PIDNamespace] != "/proc/4242/ns/pid" {
		t.Errorf("pod pid mode not inherited: %q", ns[specs.PIDNamespace])
	}
}

func TestSpecSeccomp(t *testing.T) {
	f := newFixture(t)
	f.sc().Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	if s := f.spec(t); s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 {
		t.Error("RuntimeDefault gave no profile")
	}
	profile := filepath.Join(t.TempDir(), "p.json")
	must(t, os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`), 0o644))
	f.sc().Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile}
	if s := f.spec(t); s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("localhost profile not loaded: %+v", s.Linux.Seccomp)
	}
	f.sc().Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: profile + ".missing"}
	if _, err := Opts(f.in); !errdefs.IsInvalidArgument(err) {
		t.Errorf("missing localhost profile: %v", err)
	}
	f.sc().Seccomp = nil
	f.sc().SeccompProfilePath = "runtime/default"
	if s := f.spec(t); s.Linux.Seccomp == nil {
		t.Error("deprecated runtime/default path ignored")
	}
}

func TestSpecAnnotationsAndFlags(t *testing.T) {
	f := newFixture(t)
	f.in.Config.Annotations = map[string]string{"user": "x", annotationSandboxID: "spoofed"}
	f.sc().NoNewPrivs = true
	s := f.spec(t)
	want := map[string]string{
		"user": "x", annotationSandboxID: "pod1", annotationContainerType: "container",
		annotationContainerName: "app", annotationSandboxName: "web", annotationSandboxNamespace: "default",
		annotationSandboxUID: "uid-1", annotationImageName: "busybox:latest",
	}
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("annotations %v, want %v", s.Annotations, want)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs ignored")
	}
}
