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

// ScopePrefix names crishim's scopes under the systemd driver
// (crishim-<id>.scope), as containerd's CRI names its cri-containerd-<id>.scope.
const ScopePrefix = "crishim"

// OCIPath is the OCI linux.cgroupsPath that nests the container or pause
// container id under the pod's cgroup parent, in the syntax of driver.
//
// Under the systemd driver the kubelet passes the pod's slice unit name
// ("kubepods-burstable-pod<uid>.slice") as parent, and runc wants
// "slice:prefix:name". Only the parent's base name is a unit name: a parent
// given as the slice's cgroup directory (/kubepods.slice/...pod<uid>.slice)
// names the same slice, and a slash would make runc refuse the path. With
// no parent a container goes where runc puts units without one
// (system.slice) or, under cgroupfs, into crishim's own /crishim (which is
// also where containerd puts it in crishim's default namespace).
func OCIPath(driver, parent, id string) string {
	if driver == DriverSystemd {
		slice := "system.slice"
		if parent != "" {
			slice = path.Base(parent)
		}
		return slice + ":" + ScopePrefix + ":" + id
	}
	if parent == "" {
		parent = "/" + ScopePrefix
	}
	return path.Join(parent, id)
}

// ParentDir is the directory, as Path gives it, that OCIPath nests the
// containers of a pod with cgroup parent under.
func ParentDir(driver, parent string) (string, error) {
	p, err := Path(OCIPath(driver, parent, "x"), driver)
	if err != nil {
		return "", err
	}
	return path.Dir(p), nil
}

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
