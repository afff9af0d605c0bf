package cgroup

import (
	"bufio"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Root is where the host's cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// V2 reports whether the host runs the unified hierarchy alone (no v1
// controllers beside it).
func V2() bool {
	_, err := os.Stat(filepath.Join(Root, "cgroup.controllers"))
	return err == nil
}

// HugetlbUsable reports whether runc can apply hugepage limits to a cgroup
// nested in dir (a path relative to the v2 mount, e.g. the pod's cgroup
// parent; it need not exist yet). A kernel can know the hugetlb controller
// without the host making it available: on v1 no hierarchy mounted for it,
// on v2 not enabled down to the pod. runc then refuses any spec with
// hugepage limits, and the kubelet sends one for every page size the node
// has, so crishim leaves them out instead (as containerd's CRI does with
// tolerate_missing_hugetlb_controller).
func HugetlbUsable(dir string) bool {
	if V2() {
		return controllerEnabled(Root, dir, "hugetlb")
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	return v1Mounted(f, "hugetlb")
}

// v1Mounted reports whether mountinfo lists a cgroup v1 hierarchy carrying
// controller.
func v1Mounted(mountinfo io.Reader, controller string) bool {
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// "... mount point, options, optional fields - fstype source super options"
		_, after, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(after)
		if len(f) < 3 || f[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(f[2], ",") {
			if opt == controller {
				return true
			}
		}
	}
	return false
}

// controllerEnabled reports whether a v2 cgroup nested in dir gets
// controller: the deepest existing ancestor of dir (dir itself first) lists
// it in cgroup.controllers. Ancestors that do not exist yet are created by
// runc, which enables for them what their parent has.
func controllerEnabled(root, dir, controller string) bool {
	dir = path.Clean("/" + dir)
	for {
		data, err := os.ReadFile(filepath.Join(root, dir, "cgroup.controllers"))
		if err == nil {
			for _, c := range strings.Fields(string(data)) {
				if c == controller {
					return true
				}
			}
			return false
		}
		if dir == "/" {
			return false
		}
		dir = path.Dir(dir)
	}
}
