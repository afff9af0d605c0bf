package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestV1Mounted(t *testing.T) {
	const base = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	for _, tc := range []struct {
		name, extra string
		want        bool
	}{
		{"no hugetlb hierarchy (these VMs)", "", false},
		{"own hierarchy", "42 31 0:39 / /sys/fs/cgroup/hugetlb rw,relatime shared:9 - cgroup cgroup rw,hugetlb\n", true},
		{"co-mounted", "42 31 0:39 / /sys/fs/cgroup/x rw - cgroup cgroup rw,hugetlb,pids\n", true},
		{"a name= hierarchy is no controller", "42 31 0:39 / /x rw - cgroup cgroup rw,name=hugetlbx\n", false},
		{"a tmpfs option is no cgroup", "42 31 0:39 / /x rw - tmpfs hugetlb rw,hugetlb\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := v1Mounted(strings.NewReader(base+tc.extra), "hugetlb"); got != tc.want {
				t.Fatalf("v1Mounted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestControllerEnabled(t *testing.T) {
	root := t.TempDir()
	write := func(dir, controllers string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "cgroup.controllers"), []byte(controllers+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", "cpuset cpu io memory hugetlb pids")
	write("kubepods", "cpuset cpu io memory hugetlb pids")
	write("kubepods/besteffort", "cpu memory pids")

	for _, tc := range []struct {
		dir  string
		want bool
	}{
		{"kubepods", true},
		{"/kubepods/pod1", true},            // pod cgroup not made yet: its parent decides
		{"kubepods/besteffort/pod2", false}, // the parent does not pass hugetlb down
		{"", true},
		{"other/deep/path", true},
	} {
		if got := controllerEnabled(root, tc.dir, "hugetlb"); got != tc.want {
			t.Errorf("controllerEnabled(%q) = %v, want %v", tc.dir, got, tc.want)
		}
	}
	if controllerEnabled(t.TempDir(), "x", "hugetlb") {
		t.Error("a root without cgroup.controllers enables nothing")
	}
}

// TestHugetlbUsableMatchesHost checks the live answer against the host's
// own view: on v1 the hierarchy must be in /proc/mounts, on v2 in the root's
// controllers.
func TestHugetlbUsableMatchesHost(t *testing.T) {
	var want bool
	if V2() {
		data, err := os.ReadFile(filepath.Join(Root, "cgroup.controllers"))
		if err != nil {
			t.Fatal(err)
		}
		want = strings.Contains(" "+strings.TrimSpace(string(data))+" ", " hugetlb ")
	} else {
		data, err := os.ReadFile("/proc/mounts")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[2] == "cgroup" && strings.Contains(","+f[3]+",", ",hugetlb,") {
				want = true
			}
		}
	}
	if got := HugetlbUsable(""); got != want {
		t.Fatalf("HugetlbUsable = %v, host says %v", got, want)
	}
}
