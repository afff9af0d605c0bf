// Package ocispec builds the OCI runtime spec of an app container from its
// CRI config, as containerd oci.SpecOpts the caller hands to
// oci.GenerateSpec. It knows nothing of containerd's records or of the
// container manager: everything a spec depends on comes in through Input.
package ocispec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/image"
	"github.com/crishim/crishim/internal/oomscore"
	"github.com/crishim/crishim/internal/userdb"
	"github.com/crishim/crishim/sandbox"
)

// OCI annotations every app container carries. The sandbox ID one makes
// the runc v2 shim group all containers of a pod into one shim process.
const (
	annotationContainerType    = "io.kubernetes.cri.container-type"
	annotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	annotationContainerName    = "io.kubernetes.cri.container-name"
	annotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annotationImageName        = "io.kubernetes.cri.image-name"
	containerTypeContainer     = "container"
)

// Input is everything the OCI spec of one app container depends on.
type Input struct {
	ID        string
	Config    *runtime.ContainerConfig
	Sandbox   *sandbox.Sandbox
	Image     image.ImageConfig
	ImageName string
	// TargetPID is the process whose PID namespace a TARGET pid mode joins.
	TargetPID uint32
	// OwnOOMScoreAdj is crishim's own score: runc cannot go below it
	// without CAP_SYS_RESOURCE, so every request is clamped up to it.
	OwnOOMScoreAdj int
	// AllCaps is the capability set privileged and "ALL" mean: what
	// crishim itself holds.
	AllCaps      []string
	CgroupDriver string
	Cgroups      Cgroups
	// Hostname is used for the HOSTNAME variable when the pod sets none.
	Hostname string
	// Users, when set, resolves the user from its copy of the image's
	// /etc/passwd and /etc/group (ImageID names the image) instead of
	// mounting the container's snapshot to read them.
	Users   *userdb.Cache
	ImageID string
}

// Opts turns a CRI container config into OCI spec options, in an order
// where later options may rely on earlier ones (seccomp's default profile
// looks at the final capabilities). A config the spec cannot express is an
// InvalidArgument, a pod not in a state to join a FailedPrecondition.
func Opts(in Input) ([]oci.SpecOpts, error) {
	cfg := in.Config
	sc := cfg.GetLinux().GetSecurityContext()
	pod := in.Sandbox.Config

	args, err := processArgs(cfg, in.Image)
	if err != nil {
		return nil, err
	}
	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutDefaultSecurity,
		oci.WithProcessArgs(args...),
		oci.WithDefaultPathEnv,
		oci.WithEnv(processEnv(cfg, in.Image, hostnameFor(pod, in.Hostname))),
		oci.WithProcessCwd(workingDir(cfg, in.Image)),
	}
	if cfg.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	userOpts, err := withCRIUser(sc, in.Image.User)
	if err != nil {
		return nil, err
	}
	if in.Users != nil {
		opts = append(opts, in.Users.Opt(in.ImageID, userOpts...))
	} else {
		opts = append(opts, userOpts...)
	}

	mounts := append(podMounts(in.Sandbox, cfg), cfg.GetMounts()...)
	// Before the CRI mounts, which replace it if one targets the same path.
	opts = append(opts, withCgroupMount(sc.GetPrivileged()))
	opts = append(opts, withBindMounts(mounts))
	opts = append(opts, withMaskedAndReadonlyPaths(sc))
	for _, d := range cfg.GetDevices() {
		if d.GetHostPath() == "" {
			return nil, fmt.Errorf("device with empty host path: %w", errdefs.ErrInvalidArgument)
		}
		opts = append(opts, oci.WithDevices(d.GetHostPath(), d.GetContainerPath(), d.GetPermissions()))
	}
	opts = append(opts, withCapabilities(sc.GetCapabilities(), in.AllCaps))
	if sc.GetPrivileged() {
		if !pod.GetLinux().GetSecurityContext().GetPrivileged() {
			return nil, fmt.Errorf("privileged container in a non-privileged pod: %w", errdefs.ErrInvalidArgument)
		}
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	opts = append(opts, withoutAmbientCaps)
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	opts = append(opts,
		WithResources(cfg.GetLinux().GetResources(), in.OwnOOMScoreAdj, in.Cgroups),
		oci.WithCgroup(cgroup.OCIPath(in.CgroupDriver, pod.GetLinux().GetCgroupParent(), in.ID)),
	)
	nsOpt, err := withPodNamespaces(NamespaceOptions(cfg, pod), in.Sandbox, in.TargetPID)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nsOpt)
	if !sc.GetPrivileged() {
		seccompOpt, err := withSeccomp(sc)
		if err != nil {
			return nil, err
		}
		opts = append(opts, seccompOpt)
	}
	opts = append(opts, oci.WithAnnotations(cfg.GetAnnotations()), oci.WithAnnotations(criAnnotations(in)))
	return opts, nil
}

// withoutDefaultSecurity undoes the parts of containerd's default spec that
// CRI expresses itself: no rlimits (inherit the runtime's), no seccomp or
// no_new_privs unless asked for.
func withoutDefaultSecurity(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	s.Process.Rlimits = nil
	s.Process.ApparmorProfile = ""
	s.Process.NoNewPrivileges = false
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}

// processArgs applies the Kubernetes rules: command replaces the image
// entrypoint and drops the image cmd; args alone replace the cmd.
func processArgs(cfg *runtime.ContainerConfig, img image.ImageConfig) ([]string, error) {
	var args []string
	switch {
	case len(cfg.GetCommand()) > 0:
		args = append(append(args, cfg.GetCommand()...), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		args = append(append(args, img.Entrypoint...), cfg.GetArgs()...)
	default:
		args = append(append(args, img.Entrypoint...), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("no command specified and the image has no entrypoint or cmd: %w", errdefs.ErrInvalidArgument)
	}
	return args, nil
}

// processEnv lists HOSTNAME, the image's environment, then the CRI one;
// a later value of the same name wins.
func processEnv(cfg *runtime.ContainerConfig, img image.ImageConfig, hostname string) []string {
	env := []string{"HOSTNAME=" + hostname}
	env = append(env, img.Env...)
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return mergeEnv(env)
}

// mergeEnv keeps one entry per variable, at its first position, with its
// last value: oci.WithEnv only dedupes against what the spec already has.
func mergeEnv(env []string) []string {
	index := map[string]int{}
	var out []string
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		if i, ok := index[name]; ok {
			out[i] = e
			continue
		}
		index[name] = len(out)
		out = append(out, e)
	}
	return out
}

func hostnameFor(pod *runtime.PodSandboxConfig, fallback string) string {
	if h := pod.GetHostname(); h != "" {
		return h
	}
	return fallback
}

func workingDir(cfg *runtime.ContainerConfig, img image.ImageConfig) string {
	if cfg.GetWorkingDir() != "" {
		return cfg.GetWorkingDir()
	}
	if img.WorkingDir != "" {
		return img.WorkingDir
	}
	return "/"
}

// withCRIUser resolves the process user: run_as_username, else
// run_as_user, else the image USER (names looked up in the container's
// own /etc/passwd and /etc/group), then the user's groups from the image
// and the pod's supplemental groups.
func withCRIUser(sc *runtime.LinuxContainerSecurityContext, imageUser string) ([]oci.SpecOpts, error) {
	var user string
	switch {
	case sc.GetRunAsUsername() != "":
		user = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		if sc.GetRunAsUser().GetValue() < 0 {
			return nil, fmt.Errorf("run_as_user %d: %w", sc.GetRunAsUser().GetValue(), errdefs.ErrInvalidArgument)
		}
		user = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	}
	if user != "" && sc.GetRunAsGroup() != nil {
		if sc.GetRunAsGroup().GetValue() < 0 {
			return nil, fmt.Errorf("run_as_group %d: %w", sc.GetRunAsGroup().GetValue(), errdefs.ErrInvalidArgument)
		}
		user += ":" + strconv.FormatInt(sc.GetRunAsGroup().GetValue(), 10)
	} else if user == "" && sc.GetRunAsGroup() != nil {
		return nil, fmt.Errorf("run_as_group without run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	if user == "" {
		user = imageUser
	}

	var opts []oci.SpecOpts
	if user != "" {
		opts = append(opts, oci.WithUser(user))
	}
	// Groups come from the user part only: an explicit group replaces the
	// primary group, not the memberships.
	member, _, _ := strings.Cut(user, ":")
	if member == "" {
		member = "0"
	}
	switch sc.GetSupplementalGroupsPolicy() {
	case runtime.SupplementalGroupsPolicy_Merge:
		opts = append(opts, oci.WithAdditionalGIDs(member))
	case runtime.SupplementalGroupsPolicy_Strict:
		// Only what the pod asks for: the image's /etc/group is not read.
		opts = append(opts, withPrimaryGroupOnly)
	default:
		return nil, fmt.Errorf("supplemental groups policy %v: %w", sc.GetSupplementalGroupsPolicy(), errdefs.ErrInvalidArgument)
	}
	if groups := sc.GetSupplementalGroups(); len(groups) > 0 {
		opts = append(opts, withSupplementalGroups(groups))
	}
	return opts, nil
}

// withCgroupMount shows the container its own cgroup at /sys/fs/cgroup
// (runc mounts the container's subtree there), where programs read their
// memory and CPU limits; writable for privileged containers only.
func withCgroupMount(privileged bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		mode := "ro"
		if privileged {
			mode = "rw"
		}
		for _, m := range s.Mounts {
			if filepath.Clean(m.Destination) == "/sys/fs/cgroup" {
				return nil
			}
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
			Options: []string{"nosuid", "noexec", "nodev", "relatime", mode},
		})
		return nil
	}
}

// withPrimaryGroupOnly starts the process's groups from its primary
// group alone, as the Strict supplemental groups policy wants.
func withPrimaryGroupOnly(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	s.Process.User.AdditionalGids = []uint32{s.Process.User.GID}
	return nil
}

func withSupplementalGroups(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		for _, g := range groups {
			if g < 0 || g > int64(^uint32(0)) {
				return fmt.Errorf("supplemental group %d: %w", g, errdefs.ErrInvalidArgument)
			}
			gid := uint32(g)
			dup := false
			for _, have := range s.Process.User.AdditionalGids {
				dup = dup || have == gid
			}
			if !dup {
				s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, gid)
			}
		}
		return nil
	}
}

// podMounts are the files every container of a pod shares with the pause
// container, unless the CRI config mounts something else there.
func podMounts(sb *sandbox.Sandbox, cfg *runtime.ContainerConfig) []*runtime.Mount {
	sc := cfg.GetLinux().GetSecurityContext()
	ro := sc.GetReadonlyRootfs()
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		taken[filepath.Clean(m.GetContainerPath())] = true
	}
	var mounts []*runtime.Mount
	add := func(dst, src string, readonly bool) {
		if !taken[dst] && src != "" {
			mounts = append(mounts, &runtime.Mount{ContainerPath: dst, HostPath: src, Readonly: readonly})
		}
	}
	if sb.Dir != "" {
		// The pause may not have a hostname file (host network pods).
		if _, err := os.Stat(sb.HostnamePath()); err == nil {
			add("/etc/hostname", sb.HostnamePath(), ro)
		}
		add("/etc/hosts", sb.HostsPath(), ro)
		add("/etc/resolv.conf", sb.ResolvPath(), ro)
	}
	shm := sb.ShmPath
	if NamespaceOptions(cfg, sb.Config).GetIpc() == runtime.NamespaceMode_NODE {
		shm = "/dev/shm"
	}
	add("/dev/shm", shm, false)
	return mounts
}

// withBindMounts adds CRI mounts as bind mounts, replacing default mounts
// at the same place. Missing host directories are created, as the kubelet
// expects for its own volume directories.
func withBindMounts(mounts []*runtime.Mount) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *specs.Spec) error {
		var added []specs.Mount
		var dests []string
		for _, m := range mounts {
			dst := filepath.Clean(m.GetContainerPath())
			if !filepath.IsAbs(dst) {
				return fmt.Errorf("mount container path %q is not absolute: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
			}
			if m.GetImage().GetImage() != "" {
				return fmt.Errorf("image volume mount at %s: %w", dst, errdefs.ErrNotImplemented)
			}
			src := m.GetHostPath()
			if src == "" || !filepath.IsAbs(src) {
				return fmt.Errorf("mount host path %q for %s must be absolute: %w", src, dst, errdefs.ErrInvalidArgument)
			}
			// The host path is the client's choice: a source crishim cannot
			// stat, create or resolve is the request's problem, not an
			// internal error.
			if _, err := os.Stat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return fmt.Errorf("create missing mount source %s: %v: %w", src, err, errdefs.ErrFailedPrecondition)
				}
			} else if err != nil {
				return fmt.Errorf("mount source %s: %v: %w", src, err, errdefs.ErrFailedPrecondition)
			}
			resolved, err := filepath.EvalSymlinks(src)
			if err != nil {
				return fmt.Errorf("resolve mount source %s: %v: %w", src, err, errdefs.ErrFailedPrecondition)
			}
			options := []string{"rbind"}
			switch m.GetPropagation() {
			case runtime.MountPropagation_PROPAGATION_PRIVATE:
				options = append(options, "rprivate")
			case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
				options = append(options, "rslave")
				if s.Linux.RootfsPropagation != "rshared" {
					s.Linux.RootfsPropagation = "rslave"
				}
			case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
				options = append(options, "rshared")
				s.Linux.RootfsPropagation = "rshared"
			default:
				return fmt.Errorf("mount %s: unknown propagation %v: %w", dst, m.GetPropagation(), errdefs.ErrInvalidArgument)
			}
			if m.GetReadonly() {
				options = append(options, "ro")
			} else {
				options = append(options, "rw")
			}
			if m.GetRecursiveReadOnly() {
				// Sub-mounts become read-only too (runc's "rro", mount_setattr
				// on Linux 5.12+); that only holds for a read-only, private mount.
				if !m.GetReadonly() {
					return fmt.Errorf("mount %s: recursive read-only needs a read-only mount: %w", dst, errdefs.ErrInvalidArgument)
				}
				if m.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE {
					return fmt.Errorf("mount %s: recursive read-only needs private propagation, not %v: %w", dst, m.GetPropagation(), errdefs.ErrInvalidArgument)
				}
				options = append(options, "rro")
			}
			added = append(added, specs.Mount{Destination: dst, Type: "bind", Source: resolved, Options: options})
			dests = append(dests, dst)
		}
		if err := oci.WithoutMounts(dests...)(ctx, client, c, s); err != nil {
			return err
		}
		// Parents before children, whatever order the client used.
		sort.SliceStable(added, func(i, j int) bool { return depth(added[i].Destination) < depth(added[j].Destination) })
		s.Mounts = append(s.Mounts, added...)
		return nil
	}
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(filepath.Clean(p), "/")
}

// withMaskedAndReadonlyPaths uses the kubelet's lists when it sends them
// and containerd's defaults otherwise.
func withMaskedAndReadonlyPaths(sc *runtime.LinuxContainerSecurityContext) oci.SpecOpts {
	var opts []oci.SpecOpts
	if p := sc.GetMaskedPaths(); len(p) > 0 {
		opts = append(opts, oci.WithMaskedPaths(p))
	}
	if p := sc.GetReadonlyPaths(); len(p) > 0 {
		opts = append(opts, oci.WithReadonlyPaths(p))
	}
	return oci.Compose(opts...)
}

// normalizeCap accepts "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN".
func normalizeCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

// withCapabilities applies add/drop on top of the default set. "ALL" is
// applied first so that "add ALL, drop X" means everything but X and
// "drop ALL, add X" means only X.
func withCapabilities(c *runtime.Capability, all []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if c == nil {
			return nil
		}
		if s.Process.Capabilities == nil {
			s.Process.Capabilities = &specs.LinuxCapabilities{}
		}
		set := append([]string(nil), s.Process.Capabilities.Bounding...)
		var add, drop []string
		for _, a := range c.GetAddCapabilities() {
			if a = normalizeCap(a); a == "ALL" {
				set = append([]string(nil), all...)
			} else {
				add = append(add, a)
			}
		}
		for _, d := range c.GetDropCapabilities() {
			if d = normalizeCap(d); d == "ALL" {
				set = nil
			} else {
				drop = append(drop, d)
			}
		}
		has := func(list []string, x string) bool {
			for _, v := range list {
				if v == x {
					return true
				}
			}
			return false
		}
		for _, a := range add {
			if !has(set, a) {
				set = append(set, a)
			}
		}
		var out []string
		for _, x := range set {
			if !has(drop, x) {
				out = append(out, x)
			}
		}
		s.Process.Capabilities.Bounding = out
		s.Process.Capabilities.Effective = append([]string(nil), out...)
		s.Process.Capabilities.Permitted = append([]string(nil), out...)
		return nil
	}
}

// withoutAmbientCaps: ambient capabilities are not part of what CRI
// clients can ask for, whatever a base spec says.
func withoutAmbientCaps(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Process != nil && s.Process.Capabilities != nil {
		s.Process.Capabilities.Ambient = nil
		s.Process.Capabilities.Inheritable = nil
	}
	return nil
}

// Cgroups is what the host's cgroups can take where the container's
// cgroup goes.
type Cgroups struct {
	V2 bool
	// Hugetlb is false where the kernel knows the controller but the host
	// does not make it available (internal/cgroup.HugetlbUsable).
	Hugetlb bool
}

// WithResources applies the CRI resources r (nil changes nothing) and their
// OOM score, clamped up to ownOOM (see internal/oomscore). Hugepage limits
// are left out where the hugetlb controller is not usable, and unified
// (cgroup v2) ones on cgroup v1: runc would refuse the spec.
func WithResources(r *runtime.LinuxContainerResources, ownOOM int, caps Cgroups) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if r == nil {
			return nil
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		res := s.Linux.Resources
		cpu := &specs.LinuxCPU{}
		if r.GetCpuPeriod() != 0 {
			p := uint64(r.GetCpuPeriod())
			cpu.Period = &p
		}
		if r.GetCpuQuota() != 0 {
			q := r.GetCpuQuota()
			cpu.Quota = &q
		}
		if r.GetCpuShares() != 0 {
			sh := uint64(r.GetCpuShares())
			cpu.Shares = &sh
		}
		cpu.Cpus = r.GetCpusetCpus()
		cpu.Mems = r.GetCpusetMems()
		if *cpu != (specs.LinuxCPU{}) {
			res.CPU = cpu
		}
		if r.GetMemoryLimitInBytes() != 0 || r.GetMemorySwapLimitInBytes() != 0 {
			mem := &specs.LinuxMemory{}
			if l := r.GetMemoryLimitInBytes(); l != 0 {
				mem.Limit = &l
			}
			if sw := r.GetMemorySwapLimitInBytes(); sw != 0 {
				mem.Swap = &sw
			}
			res.Memory = mem
		}
		for _, h := range r.GetHugepageLimits() {
			if !caps.Hugetlb {
				break
			}
			res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
		}
		if caps.V2 && len(r.GetUnified()) > 0 {
			res.Unified = map[string]string{}
			for k, v := range r.GetUnified() {
				res.Unified[k] = v
			}
		}
		adj := oomscore.Clamp(r.GetOomScoreAdj(), ownOOM)
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

// NamespaceOptions prefers the container's own options (the kubelet copies
// the pod's into every container) and falls back to the pod's.
func NamespaceOptions(cfg *runtime.ContainerConfig, pod *runtime.PodSandboxConfig) *runtime.NamespaceOption {
	if ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns != nil {
		return ns
	}
	return pod.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

// withPodNamespaces joins the pause container's namespaces, or the host's
// for NODE modes; UTS follows the network mode.
func withPodNamespaces(ns *runtime.NamespaceOption, sb *sandbox.Sandbox, targetPID uint32) (oci.SpecOpts, error) {
	pause := func(kind string) (string, error) {
		if sb.PausePID == 0 {
			return "", fmt.Errorf("pod %s has no running pause process: %w", sb.ID, errdefs.ErrFailedPrecondition)
		}
		return fmt.Sprintf("/proc/%d/ns/%s", sb.PausePID, kind), nil
	}
	var opts []oci.SpecOpts
	join := func(t specs.LinuxNamespaceType, path string) {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: t, Path: path}))
	}

	if ns.GetNetwork() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		netPath := sb.NetNSPath
		if netPath == "" {
			p, err := pause("net")
			if err != nil {
				return nil, err
			}
			netPath = p
		}
		join(specs.NetworkNamespace, netPath)
		p, err := pause("uts")
		if err != nil {
			return nil, err
		}
		join(specs.UTSNamespace, p)
	}

	if ns.GetIpc() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		p, err := pause("ipc")
		if err != nil {
			return nil, err
		}
		join(specs.IPCNamespace, p)
	}

	switch ns.GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		p, err := pause("pid")
		if err != nil {
			return nil, err
		}
		join(specs.PIDNamespace, p)
	case runtime.NamespaceMode_TARGET:
		if targetPID == 0 {
			return nil, fmt.Errorf("pid namespace target %q is not running: %w", ns.GetTargetId(), errdefs.ErrFailedPrecondition)
		}
		join(specs.PIDNamespace, fmt.Sprintf("/proc/%d/ns/pid", targetPID))
	case runtime.NamespaceMode_CONTAINER:
		// The default spec already asks for a new PID namespace.
	}
	return oci.Compose(opts...), nil
}

// withSeccomp applies the CRI seccomp profile; the deprecated
// seccomp_profile_path form is honoured when the structured one is absent.
func withSeccomp(sc *runtime.LinuxContainerSecurityContext) (oci.SpecOpts, error) {
	p := sc.GetSeccomp()
	if p == nil {
		switch path := sc.GetSeccompProfilePath(); {
		case path == "" || path == "unconfined":
			return oci.WithSeccompUnconfined, nil
		case path == "runtime/default" || path == "docker/default":
			return seccomp.WithDefaultProfile(), nil
		case strings.HasPrefix(path, "localhost/"):
			p = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: strings.TrimPrefix(path, "localhost/")}
		default:
			return nil, fmt.Errorf("seccomp profile path %q: %w", path, errdefs.ErrInvalidArgument)
		}
	}
	switch p.GetProfileType() {
	case runtime.SecurityProfile_Unconfined:
		return oci.WithSeccompUnconfined, nil
	case runtime.SecurityProfile_RuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	case runtime.SecurityProfile_Localhost:
		ref := p.GetLocalhostRef()
		if !filepath.IsAbs(ref) {
			return nil, fmt.Errorf("seccomp localhost profile %q must be an absolute path: %w", ref, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(ref); err != nil {
			return nil, fmt.Errorf("seccomp localhost profile %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
		}
		return seccomp.WithProfile(ref), nil
	}
	return nil, fmt.Errorf("seccomp profile type %v: %w", p.GetProfileType(), errdefs.ErrInvalidArgument)
}

func criAnnotations(in Input) map[string]string {
	md := in.Sandbox.Config.GetMetadata()
	return map[string]string{
		annotationContainerType:    containerTypeContainer,
		annotationSandboxID:        in.Sandbox.ID,
		annotationContainerName:    in.Config.GetMetadata().GetName(),
		annotationSandboxName:      md.GetName(),
		annotationSandboxNamespace: md.GetNamespace(),
		annotationSandboxUID:       md.GetUid(),
		annotationImageName:        in.ImageName,
	}
}
