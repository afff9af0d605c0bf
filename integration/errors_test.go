//go:build linux

package integration

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// unknownID looks like an ID crishim would make but names nothing.
var unknownID = strings.Repeat("0f", 32)

// TestBadRequests checks that malformed or impossible requests get the
// gRPC code a client can act on, and that crishim survives all of them.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := rpcCtx(t)

	_, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{})
	wantCode(t, "RunPodSandbox without config", err, codes.InvalidArgument)
	_, err = c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{}})
	wantCode(t, "RunPodSandbox without metadata", err, codes.InvalidArgument)
	_, err = c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Namespace: podNamespace, Uid: "x"}}})
	wantCode(t, "RunPodSandbox with an empty name", err, codes.InvalidArgument)

	_, err = c.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: unknownID})
	wantCode(t, "PodSandboxStatus of an unknown pod", err, codes.NotFound)
	_, err = c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: unknownID})
	wantCode(t, "ContainerStatus of an unknown container", err, codes.NotFound)
	_, err = c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: unknownID})
	wantCode(t, "StartContainer of an unknown container", err, codes.NotFound)
	_, err = c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: unknownID, Cmd: []string{"true"}})
	wantCode(t, "ExecSync in an unknown container", err, codes.NotFound)
	_, err = c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: unknownID,
		Config: containerConfig("x", env.BusyboxImage, "true"), SandboxConfig: podConfig(t, "unknown")})
	wantCode(t, "CreateContainer in an unknown pod", err, codes.NotFound)

	// Absent things are already stopped and removed.
	if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: unknownID}); err != nil {
		t.Errorf("StopPodSandbox of an unknown pod: %v", err)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: unknownID}); err != nil {
		t.Errorf("RemovePodSandbox of an unknown pod: %v", err)
	}
	if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: unknownID}); err != nil {
		t.Errorf("RemoveContainer of an unknown container: %v", err)
	}

	_, err = c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{}})
	wantCode(t, "PullImage of an empty reference", err, codes.InvalidArgument)
	_, err = c.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "Not A Reference!"}})
	wantCode(t, "PullImage of a malformed reference", err, codes.InvalidArgument)

	_, err = c.rt.CheckpointPod(ctx, &runtime.CheckpointPodRequest{PodSandboxId: unknownID})
	wantCode(t, "CheckpointPod", err, codes.Unimplemented)
	if !strings.Contains(status.Convert(err).Message(), "checkpoint/restore unavailable: ") {
		t.Errorf("CheckpointPod refusal does not say why: %v", err)
	}

	// A pod with real containers, to be the target of duplicate names and bad container configs.
	pod := podConfig(t, "dup")
	podID := c.runPod(pod)
	_, err = c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	wantCode(t, "RunPodSandbox with the name of a running pod", err, codes.AlreadyExists)
	if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("the first pod is %v after a duplicate was refused, want READY", st.State)
	}

	_, err = c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: &runtime.ContainerConfig{Image: &runtime.ImageSpec{Image: env.BusyboxImage}}, SandboxConfig: pod})
	wantCode(t, "CreateContainer without metadata", err, codes.InvalidArgument)
	_, err = c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("noimage", "", "true"), SandboxConfig: pod})
	wantCode(t, "CreateContainer without an image", err, codes.InvalidArgument)
	_, err = c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("absent", "registry.crishim.test/never-pulled:1", "true"), SandboxConfig: pod})
	wantCode(t, "CreateContainer from an image that was never pulled", err, codes.NotFound)

	c.createContainer(podID, pod, containerConfig("twice", env.BusyboxImage, idleCmd...))
	_, err = c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("twice", env.BusyboxImage, idleCmd...), SandboxConfig: pod})
	wantCode(t, "CreateContainer with a name already used in the pod", err, codes.AlreadyExists)

	if _, err := c.rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Errorf("crishim does not answer after the bad requests: %v", err)
	}
}
