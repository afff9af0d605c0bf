package container

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	crishimpb "github.com/crishim/crishim/proto"
)

func TestStatsFilterMatches(t *testing.T) {
	e := &entry{
		id:  "abcdef",
		rec: &crishimpb.ContainerRecord{SandboxId: "pod123"},
		cfg: &runtime.ContainerConfig{Labels: map[string]string{"app": "web", "tier": "front"}},
	}
	for _, tc := range []struct {
		f    *runtime.ContainerStatsFilter
		want bool
	}{
		{nil, true},
		{&runtime.ContainerStatsFilter{}, true},
		{&runtime.ContainerStatsFilter{Id: "abcdef"}, true},
		{&runtime.ContainerStatsFilter{Id: "abcdeg"}, false},
		// Filters take full IDs: the server resolves prefixes.
		{&runtime.ContainerStatsFilter{Id: "abc"}, false},
		{&runtime.ContainerStatsFilter{PodSandboxId: "pod123"}, true},
		{&runtime.ContainerStatsFilter{PodSandboxId: "pod1"}, false},
		{&runtime.ContainerStatsFilter{PodSandboxId: "pod2"}, false},
		{&runtime.ContainerStatsFilter{LabelSelector: map[string]string{"app": "web"}}, true},
		{&runtime.ContainerStatsFilter{LabelSelector: map[string]string{"app": "web", "tier": "back"}}, false},
		{&runtime.ContainerStatsFilter{LabelSelector: map[string]string{"missing": ""}}, false},
	} {
		if got := statsFilterMatches(tc.f, e); got != tc.want {
			t.Errorf("filter %v: %v, want %v", tc.f, got, tc.want)
		}
	}
}
