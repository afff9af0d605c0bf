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
		{&runtime.ContainerStatsFilter{Id: "abc"}, true},
		{&runtime.ContainerStatsFilter{Id: "abd"}, false},
		{&runtime.ContainerStatsFilter{PodSandboxId: "pod1"}, true},
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
