package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/cap"
	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/oomscore"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI annotations on the pause container. The runc v2 shim groups every
// container with the same sandbox-id annotation into one shim process.
const (
	annotationContainerType    = "io.kubernetes.cri.container-type"
	annotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	annotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	annotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	annotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	annotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	containerTypeSandbox       = "sandbox"
)

// pauseOOMScoreAdj keeps the pause process among the last the OOM killer
// picks: losing it takes the whole pod's namespaces down.
const pauseOOMScoreAdj = -998

// processImage is the part of the pause image config the spec uses.
type processImage struct {
	Args []string
	Env  []string
	Cwd  string
	User string
}

// pauseSpec is everything the pause container's OCI spec derives from.
type pauseSpec struct {
	ID           string
	Config       *runtime.PodSandboxConfig
	Image        processImage
	NetNSPath    string
	Hostname     string
	CgroupDriver string
	// OOMFloor is crishim's own oom_score_adj; the kernel refuses lower
	// values without CAP_SYS_RESOURCE.
	OOMFloor int
}

// specOpts lists the option functions that turn containerd's default spec
// into the pause container's.
func (p pauseSpec) specOpts() ([]oci.SpecOpts, error) {
	if len(p.Image.Args) == 0 {
		return nil, fmt.Errorf("sandbox image has neither entrypoint nor command: %w", errdefs.ErrInvalidArgument)
	}
	sc := p.Config.GetLinux().GetSecurityContext()
	opts := []oci.SpecOpts{
		withProcess(p.Image),
		withUser(p.Image.User, sc),
		withPodNamespaces(namespaceOptions(p.Config), p.NetNSPath),
		withSysctls(p.Config.GetLinux().GetSysctls()),
		oci.WithCgroup(cgroup.OCIPath(p.CgroupDriver, p.Config.GetLinux().GetCgroupParent(), p.ID)),
		withOOMScoreAdj(oomscore.Clamp(pauseOOMScoreAdj, p.OOMFloor)),
		withResources(p.Config.GetLinux().GetResources()),
		oci.WithNoNewPrivileges,
		oci.WithAnnotations(pauseAnnotations(p.ID, p.Config)),
		// The pause writes nothing, and a root nothing can write to has a
		// usage that is measured once (image.Service.SealUsage).
		oci.WithRootFSReadonly(),
	}
	if !hostNetwork(p.Config) {
		opts = append(opts, oci.WithHostname(p.Hostname))
	}
	if sc.GetPrivileged() {
		opts = append(opts, withPrivileged)
	} else {
		sec, err := seccompOpt(sc)
		if err != nil {
			return nil, err
		}
		if sec != nil {
			opts = append(opts, sec)
		}
	}
	return opts, nil
}

func pauseAnnotations(id string, cfg *runtime.PodSandboxConfig) map[string]string {
	md := cfg.GetMetadata()
	a := map[string]string{
		annotationContainerType:    containerTypeSandbox,
		annotationSandboxID:        id,
		annotationSandboxName:      md.GetName(),
		annotationSandboxNamespace: md.GetNamespace(),
		annotationSandboxUID:       md.GetUid(),
	}
	if cfg.GetLogDirectory() != "" {
		a[annotationSandboxLogDir] = cfg.GetLogDirectory()
	}
	return a
}

func withProcess(img processImage) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.Args = append([]string(nil), img.Args...)
		if len(img.Env) > 0 {
			s.Process.Env = append([]string(nil), img.Env...)
		}
		s.Process.Cwd = "/"
		if img.Cwd != "" {
			s.Process.Cwd = img.Cwd
		}
		return nil
	}
}

// withUser runs the pause as the pod's run_as_user/run_as_group when given,
// else as the image's user. Numeric users need no look-up in the image's
// /etc/passwd; named ones fall back to containerd's resolution.
func withUser(imageUser string, sc *runtime.LinuxSandboxSecurityContext) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		uid, gid, numeric := parseNumericUser(imageUser)
		if !numeric && sc.GetRunAsUser() == nil {
			if err := oci.WithUser(imageUser)(ctx, client, c, s); err != nil {
				return fmt.Errorf("resolve sandbox image user %q: %w", imageUser, err)
			}
			uid, gid = s.Process.User.UID, s.Process.User.GID
		}
		if ru := sc.GetRunAsUser(); ru != nil {
			if ru.GetValue() < 0 || ru.GetValue() > 1<<32-2 {
				return fmt.Errorf("run_as_user %d out of range: %w", ru.GetValue(), errdefs.ErrInvalidArgument)
			}
			uid = uint32(ru.GetValue())
		}
		if rg := sc.GetRunAsGroup(); rg != nil {
			if rg.GetValue() < 0 || rg.GetValue() > 1<<32-2 {
				return fmt.Errorf("run_as_group %d out of range: %w", rg.GetValue(), errdefs.ErrInvalidArgument)
			}
			gid = uint32(rg.GetValue())
		}
		s.Process.User.UID, s.Process.User.GID = uid, gid
		s.Process.User.AdditionalGids = nil
		for _, g := range sc.GetSupplementalGroups() {
			if g < 0 || g > 1<<32-2 {
				return fmt.Errorf("supplemental group %d out of range: %w", g, errdefs.ErrInvalidArgument)
			}
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
		}
		return nil
	}
}

// parseNumericUser parses "", "uid" and "uid:gid"; numeric is false for
// anything naming a user or group.
func parseNumericUser(user string) (uid, gid uint32, numeric bool) {
	if user == "" {
		return 0, 0, true
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uv, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	if !hasGroup {
		return uint32(uv), 0, true
	}
	gv, err := strconv.ParseUint(g, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	return uint32(uv), uint32(gv), true
}

// withPodNamespaces gives the pause new IPC, UTS and PID namespaces and the
// pod's network namespace, except where the pod asks for the host's. The
// pause has its own PID namespace in CONTAINER mode too: each app
// container then gets another one.
func withPodNamespaces(nsOpts *runtime.NamespaceOption, netnsPath string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		set := func(typ specs.LinuxNamespaceType, host bool, path string) error {
			if host {
				return oci.WithHostNamespace(typ)(ctx, client, c, s)
			}
			return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: typ, Path: path})(ctx, client, c, s)
		}
		hostNet := nsOpts.GetNetwork() == runtime.NamespaceMode_NODE
		if !hostNet && netnsPath == "" {
			return fmt.Errorf("pod network namespace path missing: %w", errdefs.ErrInvalidArgument)
		}
		if err := set(specs.NetworkNamespace, hostNet, netnsPath); err != nil {
			return err
		}
		// A host-network pod has the host's name too, as in Kubernetes.
		if err := set(specs.UTSNamespace, hostNet, ""); err != nil {
			return err
		}
		if err := set(specs.IPCNamespace, nsOpts.GetIpc() == runtime.NamespaceMode_NODE, ""); err != nil {
			return err
		}
		if err := set(specs.PIDNamespace, nsOpts.GetPid() == runtime.NamespaceMode_NODE, ""); err != nil {
			return err
		}
		return set(specs.MountNamespace, false, "")
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

func withOOMScoreAdj(v int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &v
		return nil
	}
}

// withResources applies the CPU and memory settings the kubelet passes for
// the sandbox; zero means unset.
func withResources(r *runtime.LinuxContainerResources) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if r == nil {
			return nil
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		res := s.Linux.Resources
		if r.GetCpuShares() > 0 || r.GetCpuQuota() != 0 || r.GetCpuPeriod() > 0 {
			if res.CPU == nil {
				res.CPU = &specs.LinuxCPU{}
			}
			if v := uint64(r.GetCpuShares()); v > 0 {
				res.CPU.Shares = &v
			}
			if v := r.GetCpuQuota(); v != 0 {
				res.CPU.Quota = &v
			}
			if v := uint64(r.GetCpuPeriod()); v > 0 {
				res.CPU.Period = &v
			}
		}
		if v := r.GetMemoryLimitInBytes(); v > 0 {
			if res.Memory == nil {
				res.Memory = &specs.LinuxMemory{}
			}
			res.Memory.Limit = &v
		}
		return nil
	}
}

// withPrivileged gives the pause every capability crishim holds and lifts
// the masked and read-only paths.
func withPrivileged(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
	caps, err := cap.Current()
	if err != nil {
		return fmt.Errorf("read current capabilities: %w", err)
	}
	for _, o := range []oci.SpecOpts{oci.WithCapabilities(caps), oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil)} {
		if err := o(ctx, client, c, s); err != nil {
			return err
		}
	}
	return nil
}

// seccompOpt picks the pause's seccomp profile from the pod's security
// context; nil means unconfined, the CRI default when nothing is asked.
func seccompOpt(sc *runtime.LinuxSandboxSecurityContext) (oci.SpecOpts, error) {
	if sp := sc.GetSeccomp(); sp != nil {
		switch sp.GetProfileType() {
		case runtime.SecurityProfile_RuntimeDefault:
			return seccomp.WithDefaultProfile(), nil
		case runtime.SecurityProfile_Unconfined:
			return nil, nil
		case runtime.SecurityProfile_Localhost:
			return localhostSeccomp(sp.GetLocalhostRef())
		}
		return nil, fmt.Errorf("unknown seccomp profile type %v: %w", sp.GetProfileType(), errdefs.ErrInvalidArgument)
	}
	switch p := sc.GetSeccompProfilePath(); {
	case p == "", p == "unconfined":
		return nil, nil
	case p == "runtime/default", p == "docker/default":
		return seccomp.WithDefaultProfile(), nil
	case strings.HasPrefix(p, "localhost/"):
		return localhostSeccomp(strings.TrimPrefix(p, "localhost/"))
	default:
		return nil, fmt.Errorf("unknown seccomp profile %q: %w", p, errdefs.ErrInvalidArgument)
	}
}

func localhostSeccomp(path string) (oci.SpecOpts, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("localhost seccomp profile %q must be an absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	return seccomp.WithProfile(path), nil
}
