package cgroup

import (
	"path"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		in, driver, want string
	}{
		// The form crishim writes for a container of a burstable pod.
		{"kubepods-burstable-pod1.slice:crishim:abc", DriverSystemd, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crishim-abc.scope"},
		{"kubepods.slice:crishim:abc", DriverSystemd, "/kubepods.slice/crishim-abc.scope"},
		{"system.slice:crishim:abc", DriverSystemd, "/system.slice/crishim-abc.scope"},
		{":crishim:abc", DriverSystemd, "/system.slice/crishim-abc.scope"},
		{"-.slice:crishim:abc", DriverSystemd, "/crishim-abc.scope"},
		// A name that is itself a slice is not wrapped in a scope.
		{"kubepods.slice:crishim:kubepods-pod2.slice", DriverSystemd, "/kubepods.slice/kubepods-pod2.slice"},
		{"/kubepods/burstable/pod1/abc", DriverCgroupfs, "/kubepods/burstable/pod1/abc"},
		{"/kubepods//pod1/./abc/", DriverCgroupfs, "/kubepods/pod1/abc"},
		{"/kubepods/pod1/abc", "", "/kubepods/pod1/abc"},
	} {
		got, err := Path(tc.in, tc.driver)
		if err != nil || got != tc.want {
			t.Errorf("Path(%q, %q) = %q, %v; want %q", tc.in, tc.driver, got, err, tc.want)
		}
	}
}

func TestPathRefusesMalformed(t *testing.T) {
	for _, tc := range []struct{ in, driver string }{
		{"kubepods/pod1/abc", DriverCgroupfs}, // relative: runc would resolve it against its own cgroup
		{"", DriverCgroupfs},
		{"/kubepods/pod1/abc", DriverSystemd}, // a cgroupfs path under the systemd driver
		{"kubepods.slice:abc", DriverSystemd},
		{"kubepods.slice:crishim:abc:def", DriverSystemd},
		{"kubepods:crishim:abc", DriverSystemd}, // not a slice
		{".slice:crishim:abc", DriverSystemd},
		{"kubepods--burstable.slice:crishim:abc", DriverSystemd},
		{"-kubepods.slice:crishim:abc", DriverSystemd},
		{"kubepods-.slice:crishim:abc", DriverSystemd},
		{"kube/pods.slice:crishim:abc", DriverSystemd},
		{"kubepods.slice:crishim:", DriverSystemd},
		{"kubepods.slice:crishim:a/b", DriverSystemd},
	} {
		if got, err := Path(tc.in, tc.driver); err == nil {
			t.Errorf("Path(%q, %q) = %q, want an error", tc.in, tc.driver, got)
		}
	}
}

func TestOCIPath(t *testing.T) {
	for _, tc := range []struct{ driver, parent, want string }{
		{DriverCgroupfs, "/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1/abc"},
		{DriverCgroupfs, "/kubepods/besteffort/pod1/", "/kubepods/besteffort/pod1/abc"},
		{DriverCgroupfs, "", "/crishim/abc"},
		{"", "/p/", "/p/abc"}, // no driver is cgroupfs, as in Path
		{DriverSystemd, "kubepods-burstable-pod1.slice", "kubepods-burstable-pod1.slice:crishim:abc"},
		// The slice's directory names the same slice.
		{DriverSystemd, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", "kubepods-burstable-pod1.slice:crishim:abc"},
		{DriverSystemd, "", "system.slice:crishim:abc"},
	} {
		if got := OCIPath(tc.driver, tc.parent, "abc"); got != tc.want {
			t.Errorf("OCIPath(%q, %q) = %q, want %q", tc.driver, tc.parent, got, tc.want)
		}
	}
}

// What OCIPath writes, Path must find again, one level below the parent's
// own directory: the OOM check, stats and resource probes read it there.
func TestOCIPathNestsUnderParent(t *testing.T) {
	for _, tc := range []struct{ driver, parent, parentDir string }{
		{DriverCgroupfs, "/kubepods/burstable/pod1", "/kubepods/burstable/pod1"},
		{DriverCgroupfs, "", "/crishim"},
		{DriverSystemd, "kubepods-burstable-pod1.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"},
		{DriverSystemd, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2.slice"},
		{DriverSystemd, "kubepods.slice", "/kubepods.slice"},
		{DriverSystemd, "", "/system.slice"},
	} {
		if dir, err := ParentDir(tc.driver, tc.parent); err != nil || dir != tc.parentDir {
			t.Errorf("ParentDir(%q, %q) = %q, %v; want %q", tc.driver, tc.parent, dir, err, tc.parentDir)
		}
		got, err := Path(OCIPath(tc.driver, tc.parent, "abc"), tc.driver)
		if err != nil {
			t.Errorf("Path(OCIPath(%q, %q)): %v", tc.driver, tc.parent, err)
			continue
		}
		if dir, base := path.Split(got); path.Clean(dir) != tc.parentDir || !strings.Contains(base, "abc") {
			t.Errorf("Path(OCIPath(%q, %q)) = %q, want a child of %q named for abc", tc.driver, tc.parent, got, tc.parentDir)
		}
	}
}

func TestParentDirRefusesMalformed(t *testing.T) {
	for _, tc := range []struct{ driver, parent string }{
		{DriverCgroupfs, "kubepods/pod1"}, // relative
		{DriverSystemd, "kubepods"},       // not a slice
		{DriverSystemd, "kubepods--x.slice"},
	} {
		if got, err := ParentDir(tc.driver, tc.parent); err == nil {
			t.Errorf("ParentDir(%q, %q) = %q, want an error", tc.driver, tc.parent, got)
		}
	}
}
