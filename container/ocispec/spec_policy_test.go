package ocispec

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The image's /etc/group makes app (uid 1000) a member of extra (2000):
// Merge keeps that membership, Strict leaves it out.
func TestSupplementalGroupsPolicy(t *testing.T) {
	for _, c := range []struct {
		policy runtime.SupplementalGroupsPolicy
		want   []uint32
	}{
		{runtime.SupplementalGroupsPolicy_Merge, []uint32{1001, 2000, 7000}},
		{runtime.SupplementalGroupsPolicy_Strict, []uint32{1001, 7000}},
	} {
		f := newFixture(t)
		f.sc().RunAsUser = &runtime.Int64Value{Value: 1000}
		f.sc().SupplementalGroups = []int64{7000}
		f.sc().SupplementalGroupsPolicy = c.policy
		got := slices.Clone(f.spec(t).Process.User.AdditionalGids)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: groups %v, want %v", c.policy, got, c.want)
		}
	}
	f := newFixture(t)
	f.sc().SupplementalGroupsPolicy = 7
	if _, err := f.trySpec(); err == nil {
		t.Error("unknown supplemental groups policy accepted")
	}
}

func TestRecursiveReadOnlyMount(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	f := newFixture(t)
	f.in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/data", HostPath: src, Readonly: true, RecursiveReadOnly: true}}
	var opts []string
	for _, m := range f.spec(t).Mounts {
		if m.Destination == "/data" {
			opts = m.Options
		}
	}
	if !slices.Contains(opts, "rro") || !slices.Contains(opts, "ro") {
		t.Errorf("mount options %v, want ro and rro", opts)
	}

	for name, m := range map[string]*runtime.Mount{
		"writable":          {ContainerPath: "/data", HostPath: src, RecursiveReadOnly: true},
		"host-to-container": {ContainerPath: "/data", HostPath: src, Readonly: true, RecursiveReadOnly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		"bidirectional":     {ContainerPath: "/data", HostPath: src, Readonly: true, RecursiveReadOnly: true, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
	} {
		f := newFixture(t)
		f.in.Config.Mounts = []*runtime.Mount{m}
		if _, err := f.trySpec(); err == nil {
			t.Errorf("%s recursive read-only mount accepted", name)
		}
	}
}
