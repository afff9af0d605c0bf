// Package cgroup answers what crishim must know of the host's cgroups
// before and after it hands runc a spec: where a container's cgroup lives
// under either cgroup driver, and which controllers it can use.
package cgroup

import (
	"fmt"
	"path"
	"strings"
)

// Driver names, as in crishim's configuration.
const (
	DriverCgroupfs = "cgroupfs"
	DriverSystemd  = "systemd"
)

// Path returns where the cgroup named by an OCI linux.cgroupsPath lives,
// relative to the root of a cgroup hierarchy (/sys/fs/cgroup on v2,
// /sys/fs/cgroup/<controller> on v1), always starting with "/".
//
// Under the cgroupfs driver the path is already that and must be absolute:
// runc resolves a relative one against its own cgroup, which crishim cannot
// know. Under the systemd driver it is "slice:prefix:name"; runc asks
// systemd for the unit <prefix>-<name>.scope (or the slice <name> when name
// ends in .slice) inside slice, whose cgroup systemd nests by the dashes of
// the slice name: "kubepods-burstable-pod1.slice:crishim:abc" lives in
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crishim-abc.scope.
func Path(cgroupsPath, driver string) (string, error) {
	if driver != DriverSystemd {
		if !strings.HasPrefix(cgroupsPath, "/") {
			return "", fmt.Errorf("cgroupfs cgroup path %q is not absolute", cgroupsPath)
		}
		return path.Clean(cgroupsPath), nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("systemd cgroup path %q is not slice:prefix:name", cgroupsPath)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		// runc's default parent for a unit without one.
		slice = "system.slice"
	}
	dir, err := SliceDir(slice)
	if err != nil {
		return "", fmt.Errorf("systemd cgroup path %q: %w", cgroupsPath, err)
	}
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("systemd cgroup path %q: bad unit name %q", cgroupsPath, name)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope"
	}
	return path.Join(dir, unit), nil
}

// SliceDir turns a slice unit name into its cgroup directory: each
// dash-separated component of the name is a parent slice, so a-b-c.slice
// is /a.slice/a-b.slice/a-b-c.slice. "-.slice" is the root.
func SliceDir(slice string) (string, error) {
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" || strings.Contains(slice, "/") {
		return "", fmt.Errorf("bad slice name %q", slice)
	}
	if base == "-" {
		return "/", nil
	}
	dir, unit := "/", ""
	for _, part := range strings.Split(base, "-") {
		if part == "" {
			// systemd refuses a-.slice, -a.slice and a--b.slice.
			return "", fmt.Errorf("bad slice name %q", slice)
		}
		if unit != "" {
			unit += "-"
		}
		unit += part
		dir = path.Join(dir, unit+".slice")
	}
	return dir, nil
}
