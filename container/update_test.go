package container

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/ocispec"
)

func TestWithUpdatedResources(t *testing.T) {
	limit, shares, adj := int64(64<<20), uint64(512), 100
	old := &specs.Spec{
		Process: &specs.Process{OOMScoreAdj: &adj},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{
			CPU:            &specs.LinuxCPU{Shares: &shares, Cpus: "0"},
			Memory:         &specs.LinuxMemory{Limit: &limit},
			HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
		}},
	}
	r := &runtime.LinuxContainerResources{
		CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000,
		MemoryLimitInBytes: 128 << 20,
		HugepageLimits:     []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 << 21}},
		OomScoreAdj:        -999,
	}
	got, err := withUpdatedResources(old, r, 200, ocispec.Cgroups{Hugetlb: true})
	if err != nil {
		t.Fatal(err)
	}
	res := got.Linux.Resources
	if *res.Memory.Limit != 128<<20 || *res.CPU.Shares != 1024 || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 {
		t.Errorf("updated resources %+v %+v", res.CPU, res.Memory)
	}
	if len(res.HugepageLimits) != 1 || res.HugepageLimits[0].Limit != 4<<21 {
		t.Errorf("hugepage limits %+v, want the new one only", res.HugepageLimits)
	}
	if *got.Process.OOMScoreAdj != 200 {
		t.Errorf("oom_score_adj %d, want it clamped up to crishim's own 200", *got.Process.OOMScoreAdj)
	}
	// The old spec is what readers may still hold: it must not change.
	if *old.Linux.Resources.Memory.Limit != 64<<20 || *old.Linux.Resources.CPU.Shares != 512 || len(old.Linux.Resources.HugepageLimits) != 1 || *old.Process.OOMScoreAdj != 100 {
		t.Errorf("old spec changed: %+v", old.Linux.Resources)
	}
}

// The kubelet sends a hugepage limit for every page size the node has;
// where the host has no usable hugetlb controller runc would refuse the
// update, so the limits are left out while the rest still applies.
func TestWithUpdatedResourcesWithoutHugetlb(t *testing.T) {
	old := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	r := &runtime.LinuxContainerResources{
		MemoryLimitInBytes: 128 << 20,
		HugepageLimits:     []*runtime.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
	}
	got, err := withUpdatedResources(old, r, 0, ocispec.Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	if res := got.Linux.Resources; len(res.HugepageLimits) != 0 || res.Memory == nil || *res.Memory.Limit != 128<<20 {
		t.Errorf("resources %+v: want the memory limit and no hugepage limits", res)
	}
}

func TestWithUpdatedResourcesKeepsUnsetFields(t *testing.T) {
	limit := int64(64 << 20)
	old := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}}
	got, err := withUpdatedResources(old, &runtime.LinuxContainerResources{CpuShares: 2}, 0, ocispec.Cgroups{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Linux.Resources.Memory == nil || *got.Linux.Resources.Memory.Limit != limit {
		t.Errorf("memory limit lost by a CPU-only update: %+v", got.Linux.Resources.Memory)
	}
}

func TestWithUpdatedResourcesRejectsNegative(t *testing.T) {
	old := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	if _, err := withUpdatedResources(old, &runtime.LinuxContainerResources{MemoryLimitInBytes: -1}, 0, ocispec.Cgroups{}); err == nil {
		t.Error("accepted a negative memory limit")
	}
	if _, err := withUpdatedResources(nil, &runtime.LinuxContainerResources{}, 0, ocispec.Cgroups{}); err == nil {
		t.Error("accepted a container without spec")
	}
}
