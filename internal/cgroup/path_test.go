package cgroup

import "testing"

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
