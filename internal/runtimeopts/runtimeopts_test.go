package runtimeopts

import (
	"testing"

	"github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"

	"github.com/crishim/crishim/internal/cgroup"
)

func TestName(t *testing.T) {
	if got := Name(""); got != RuncV2 {
		t.Errorf("Name(\"\") = %q, want %q", got, RuncV2)
	}
	if got := Name("io.containerd.runsc.v1"); got != "io.containerd.runsc.v1" {
		t.Errorf("Name kept no configured runtime: %q", got)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		runtime, driver string
		systemd         bool
	}{
		{"", cgroup.DriverSystemd, true},
		{RuncV2, cgroup.DriverSystemd, true},
		{RuncV2, cgroup.DriverCgroupfs, false},
		{"", "", false},
	} {
		opts, ok := Options(tc.runtime, tc.driver).(*runcoptions.Options)
		if !ok {
			t.Errorf("Options(%q, %q) = %T, want runc options", tc.runtime, tc.driver, Options(tc.runtime, tc.driver))
			continue
		}
		if opts.SystemdCgroup != tc.systemd {
			t.Errorf("Options(%q, %q).SystemdCgroup = %v, want %v", tc.runtime, tc.driver, opts.SystemdCgroup, tc.systemd)
		}
		// containerd.WithRuntime sends them as an Any; the shim decodes
		// the type URL it knows.
		a, err := typeurl.MarshalAny(opts)
		if err != nil {
			t.Fatalf("marshal runc options: %v", err)
		}
		if a.GetTypeUrl() != "containerd.runc.v1.Options" {
			t.Errorf("runc options type URL %q, want containerd.runc.v1.Options", a.GetTypeUrl())
		}
	}
	if got := Options("io.containerd.runsc.v1", cgroup.DriverSystemd); got != nil {
		t.Errorf("another shim gets runc options %v", got)
	}
}

func TestSnapshotter(t *testing.T) {
	if got := Snapshotter(""); got != containerd.DefaultSnapshotter || got == "" {
		t.Errorf("Snapshotter(\"\") = %q, want containerd's default %q", got, containerd.DefaultSnapshotter)
	}
	if got := Snapshotter("native"); got != "native" {
		t.Errorf("Snapshotter(\"native\") = %q", got)
	}
}
