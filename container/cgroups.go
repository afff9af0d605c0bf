package container

import (
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crishim/crishim/container/ocispec"
	"github.com/crishim/crishim/internal/cgroup"
)

// cgroupCaps tells what a container's cgroup under the pod's cgroup parent
// can take. Detected for every spec rather than once: the kubelet's QoS
// cgroups, and the controllers enabled in them, come and go.
func (m *Manager) cgroupCaps(parent string) ocispec.Cgroups {
	dir, err := cgroup.ParentDir(m.cfg.CgroupDriver, parent)
	if err != nil {
		// A malformed parent fails at runc; the root's controllers are as
		// good an answer as any until then.
		dir = "/"
	}
	return ocispec.Cgroups{V2: m.cgroupV2, Hugetlb: cgroup.HugetlbUsable(dir)}
}

// cgroupParentOf recovers the pod's cgroup parent from a container spec
// made by cgroup.OCIPath.
func cgroupParentOf(spec *specs.Spec, driver string) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	p := spec.Linux.CgroupsPath
	if driver == cgroup.DriverSystemd {
		slice, _, _ := strings.Cut(p, ":")
		return slice
	}
	if p == "" {
		return ""
	}
	return path.Dir(p)
}
