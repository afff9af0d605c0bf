package server

import (
	"slices"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestIdleReadsAreCRIReads keeps the list of calls that leave GOMAXPROCS
// lowered to real CRI method names (a misspelt one would count as work
// silently) and every call that creates, changes or runs something out of it.
func TestIdleReadsAreCRIReads(t *testing.T) {
	methods := map[string]bool{}
	for _, m := range slices.Concat(runtime.RuntimeService_ServiceDesc.Methods, runtime.ImageService_ServiceDesc.Methods) {
		methods[m.MethodName] = true
	}
	for rpc := range idleReads {
		if !methods[rpc] {
			t.Errorf("idle read %q is not a unary CRI method", rpc)
		}
	}
	for _, work := range []string{
		"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "CreateContainer", "StartContainer",
		"StopContainer", "RemoveContainer", "UpdateContainerResources", "ReopenContainerLog", "ExecSync",
		"Exec", "Attach", "PortForward", "CheckpointContainer", "UpdateRuntimeConfig", "UpdatePodSandboxResources",
		"PullImage", "RemoveImage",
	} {
		if !methods[work] {
			t.Errorf("%q is not a unary CRI method", work)
		}
		if idleReads[work] {
			t.Errorf("%s counts as an idle read; it is work", work)
		}
	}
}
