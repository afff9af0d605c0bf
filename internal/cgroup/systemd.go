package cgroup

import (
	"path"
	"strings"
)

// SystemdSliceDir is where systemd puts a slice unit in the hierarchy:
// every dash in the name opens a parent slice, so
// "kubepods-burstable-pod1.slice" lives at
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".
// An empty name or "-.slice" is the root.
func SystemdSliceDir(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "" || name == "-" || strings.Contains(name, "/") {
		return "/"
	}
	dir, prefix := "/", ""
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "/" // malformed ("a--b", "-a"): systemd refuses it too
		}
		prefix += part
		dir = path.Join(dir, prefix+".slice")
		prefix += "-"
	}
	return dir
}
