package preflight

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/crishim/crishim/internal/config"
)

// fakeMachine is a healthy cgroup v2 machine; tests break one thing each.
type fakeMachine struct {
	files    map[string]string
	written  map[string]string
	writeErr error
	paths    map[string]string
	fsTypes  map[string]int64
	existing map[string]bool
	readOnly map[string]error
	cd       ContainerdInfo
	cdErr    error
	cni      CNIState
}

func healthy() *fakeMachine {
	return &fakeMachine{
		files: map[string]string{
			"/proc/1/comm":                       "systemd\n",
			"/sys/fs/cgroup/cgroup.controllers":  "cpuset cpu io memory hugetlb pids rdma misc\n",
			"/proc/filesystems":                  "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n",
			"/proc/self/status":                  "Name:\tcrishim\nSeccomp:\t0\nSeccomp_filters:\t0\n",
			"/proc/sys/user/max_user_namespaces": "63000\n",
			"/proc/sys/kernel/osrelease":         "6.1.0-18-amd64\n",
			"/proc/self/oom_score_adj":           "0\n",
		},
		written:  map[string]string{},
		paths:    map[string]string{"runc": "/usr/sbin/runc", "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2"},
		fsTypes:  map[string]int64{"/sys/fs/cgroup": cgroup2Magic},
		existing: map[string]bool{"/": true, "/run": true},
		readOnly: map[string]error{},
		cd: ContainerdInfo{Version: "1.6.20~ds1", Plugins: []Plugin{
			{Type: "io.containerd.snapshotter.v1", ID: "native"},
			{Type: "io.containerd.snapshotter.v1", ID: "overlayfs"},
			{Type: "io.containerd.snapshotter.v1", ID: "btrfs", InitErr: "not a btrfs filesystem"},
		}},
	}
}

func (m *fakeMachine) probes() Probes {
	return Probes{
		ReadFile: func(p string) ([]byte, error) {
			if s, ok := m.files[p]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
		WriteFile: func(p string, data []byte) error {
			if m.writeErr != nil {
				return m.writeErr
			}
			m.written[p] += string(data) + ";"
			return nil
		},
		LookPath: func(name string) (string, error) {
			if p, ok := m.paths[name]; ok {
				return p, nil
			}
			return "", errors.New("not found")
		},
		Output: func(name string, args ...string) (string, error) {
			return "runc version 1.1.5\ncommit: x\n", nil
		},
		FSType: func(p string) (int64, error) {
			if t, ok := m.fsTypes[p]; ok {
				return t, nil
			}
			return 0, fs.ErrNotExist
		},
		Writable: func(p string) error { return m.readOnly[p] },
		Exists:   func(p string) bool { return m.existing[p] },
		Containerd: func(ctx context.Context, address string) (ContainerdInfo, error) {
			return m.cd, m.cdErr
		},
		CNI: func(config.Config) CNIState { return m.cni },
	}
}

func byName(t *testing.T, results []Result, name string) Result {
	t.Helper()
	for _, r := range results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %+v", name, results)
	return Result{}
}

func TestHealthyMachinePasses(t *testing.T) {
	m := healthy()
	results := Run(context.Background(), config.Default(), m.probes())
	for _, r := range results {
		if r.Level != OK {
			t.Errorf("%s: %s: %s", r.Name, r.Level, r.Detail)
		}
	}
	if Failed(results) {
		t.Error("Failed = true on a healthy machine")
	}
	// The oom_score_adj probe lowered and then restored the value.
	if got := m.written[oomScoreAdjPath]; got != "-1;0;" {
		t.Errorf("oom_score_adj writes = %q, want lower then restore", got)
	}
}

func TestBrokenMachines(t *testing.T) {
	cases := []struct {
		name   string
		breakf func(*fakeMachine, *config.Config)
		check  string
		want   Level
		detail string
	}{
		{"containerd down", func(m *fakeMachine, _ *config.Config) { m.cdErr = errors.New("connection refused") },
			"containerd", Fail, "not reachable at /run/containerd/containerd.sock"},
		{"snapshotter unchecked without containerd", func(m *fakeMachine, _ *config.Config) { m.cdErr = errors.New("refused") },
			"snapshotter", Warn, "not checked"},
		{"old containerd", func(m *fakeMachine, _ *config.Config) { m.cd.Version = "v1.5.9" },
			"containerd", Warn, "1.5.9"},
		{"snapshotter failed to load", func(_ *fakeMachine, c *config.Config) { c.Snapshotter = "btrfs" },
			"snapshotter", Fail, "not a btrfs filesystem"},
		{"snapshotter unknown", func(_ *fakeMachine, c *config.Config) { c.Snapshotter = "zfs" },
			"snapshotter", Fail, "no plugin io.containerd.snapshotter.v1.zfs"},
		{"no runc", func(m *fakeMachine, _ *config.Config) { delete(m.paths, "runc") },
			"runc", Fail, "not found"},
		{"no shim", func(m *fakeMachine, _ *config.Config) { delete(m.paths, "containerd-shim-runc-v2") },
			"runtime shim", Warn, "containerd-shim-runc-v2"},
		{"cni broken", func(m *fakeMachine, _ *config.Config) { m.cni.Err = errors.New("CNI plugins bridge not found") },
			"cni", Fail, "bridge not found"},
		{"cgroup v1 warns", func(m *fakeMachine, _ *config.Config) {
			m.fsTypes["/sys/fs/cgroup"] = tmpfsMagic
			m.files["/proc/cgroups"] = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t8\t1\ncpu\t1\t8\t1\nmemory\t4\t1\t1\npids\t8\t8\t1\n"
		}, "cgroups", Warn, "v1"},
		{"cgroup v1 without memory", func(m *fakeMachine, _ *config.Config) {
			m.fsTypes["/sys/fs/cgroup"] = tmpfsMagic
			m.files["/proc/cgroups"] = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t8\t1\ncpu\t1\t8\t1\nmemory\t0\t1\t0\npids\t8\t8\t1\n"
		}, "cgroups", Fail, "controllers not available: memory"},
		{"cgroup v2 without pids", func(m *fakeMachine, _ *config.Config) {
			m.files["/sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu memory\n"
		},
			"cgroups", Fail, "pids"},
		{"systemd driver without systemd", func(m *fakeMachine, c *config.Config) {
			m.files["/proc/1/comm"] = "tini\n"
			c.CgroupDriver = "systemd"
		}, "cgroup driver", Fail, "PID 1 is not systemd"},
		{"cgroupfs under systemd", func(_ *fakeMachine, c *config.Config) { c.CgroupDriver = "cgroupfs" },
			"cgroup driver", Warn, "while PID 1 is systemd"},
		{"no overlay", func(m *fakeMachine, _ *config.Config) { m.files["/proc/filesystems"] = "nodev\tsysfs\n\text4\n" },
			"overlayfs", Warn, "not in /proc/filesystems"},
		{"no seccomp", func(m *fakeMachine, _ *config.Config) { m.files["/proc/self/status"] = "Name:\tcrishim\n" },
			"seccomp", Warn, "not found"},
		{"user namespaces off", func(m *fakeMachine, _ *config.Config) { m.files["/proc/sys/user/max_user_namespaces"] = "0\n" },
			"user namespaces", Warn, `"0"`},
		{"old kernel", func(m *fakeMachine, _ *config.Config) { m.files["/proc/sys/kernel/osrelease"] = "5.10.0-28-amd64\n" },
			"idmapped mounts", Warn, "5.12"},
		{"overlay idmap needs 5.19", func(m *fakeMachine, _ *config.Config) { m.files["/proc/sys/kernel/osrelease"] = "5.15.0\n" },
			"idmapped mounts", Warn, "5.19"},
		{"no CAP_SYS_RESOURCE", func(m *fakeMachine, _ *config.Config) {
			m.files["/proc/self/oom_score_adj"] = "-500\n"
			m.writeErr = os.ErrPermission
		}, "oom_score_adj", Warn, "raises lower values that pods ask for to -500"},
		{"socket dir read-only", func(m *fakeMachine, _ *config.Config) {
			m.readOnly["/run"] = &fs.PathError{Op: "access", Path: "/run", Err: fs.ErrPermission}
		},
			"socket directory", Fail, "/run is not writable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, cfg := healthy(), config.Default()
			tc.breakf(m, &cfg)
			results := Run(context.Background(), cfg, m.probes())
			r := byName(t, results, tc.check)
			if r.Level != tc.want || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("%s = %s %q; want %s containing %q", tc.check, r.Level, r.Detail, tc.want, tc.detail)
			}
			if r.Level != OK && r.Fix == "" {
				t.Errorf("%s: %s without a fix", tc.check, r.Level)
			}
			// Without containerd the containerd check fails as well.
			othersFail := m.cdErr != nil
			if Failed(results) != (tc.want == Fail || othersFail) {
				t.Errorf("Failed = %v with one %s", Failed(results), tc.want)
			}
		})
	}
}

func TestOOMScoreAdjAtMinimumNeedsNoWrite(t *testing.T) {
	m := healthy()
	m.files[oomScoreAdjPath] = "-1000\n"
	m.writeErr = os.ErrPermission
	if r := checkOOMScoreAdj(m.probes()); r.Level != OK {
		t.Errorf("at -1000: %s %s", r.Level, r.Detail)
	}
}

func TestPrintFormat(t *testing.T) {
	var buf bytes.Buffer
	Print(&buf, []Result{
		{Name: "runc", Level: OK, Detail: "/usr/sbin/runc", Fix: "ignored"},
		{Name: "cni", Level: Fail, Detail: "no plugins", Fix: "install them"},
	})
	want := "ok    runc: /usr/sbin/runc\nfail  cni: no plugins\n      fix: install them\n"
	if buf.String() != want {
		t.Errorf("Print:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestShimBinaryAndVersions(t *testing.T) {
	if got := shimBinary("io.containerd.runc.v2"); got != "containerd-shim-runc-v2" {
		t.Errorf("shimBinary = %q", got)
	}
	if got := shimBinary("io.containerd.kata.v2"); got != "containerd-shim-kata-v2" {
		t.Errorf("shimBinary = %q", got)
	}
	for in, want := range map[string][2]int{"6.1.0-18-amd64": {6, 1}, "1.6.20~ds1": {1, 6}, "5.19rc1.x": {5, 19}} {
		if got, ok := majorMinor(in); !ok || got != want {
			t.Errorf("majorMinor(%q) = %v, %v", in, got, ok)
		}
	}
	if _, ok := majorMinor("garbage"); ok {
		t.Error("majorMinor(garbage) ok")
	}
}
