//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// podShim returns the PID of the runc shim serving pod podID: crishim
// groups a pod's containers into the shim started for its pause
// container, whose -id is the pod ID.
func podShim(t *testing.T, podID string) int {
	t.Helper()
	ours := map[int]bool{}
	for _, pid := range testenv.ProcessesWithArgs("containerd-shim-runc-v2", "-address", env.Containerd.Address) {
		ours[pid] = true
	}
	var found []int
	for _, pid := range testenv.ProcessesWithArgs("containerd-shim-runc-v2", "-id", podID) {
		if ours[pid] {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("pod %s: want one containerd-shim-runc-v2 -id %s, found PIDs %v", podID, podID, found)
	}
	return found[0]
}

// shimRunning reports whether the shim of pod podID still runs as pid (a
// PID the kernel handed to another process does not count).
func shimRunning(pid int, podID string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(raw), "\x00"+podID+"\x00")
}

// waitShimExit polls until the shim of pod podID has exited; false when it
// still runs at the deadline.
func waitShimExit(pid int, podID string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for shimRunning(pid, podID) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// attempt is what the kubelet creates for the nth run of a container.
func attempt(n uint32, cmd ...string) *runtime.ContainerConfig {
	cfg := containerConfig("app", env.BusyboxImage, cmd...)
	cfg.Metadata.Attempt = n
	return cfg
}

// crashLoop runs the kubelet's restart sequence for a container that exits
// by itself with exit 1: each attempt runs and exits, the next one is
// created and started, and the kubelet's garbage collection removes the
// attempt before the previous one. It returns the attempts left.
func (c *client) crashLoop(podID string, pod *runtime.PodSandboxConfig, attempts int) []string {
	t := c.t
	t.Helper()
	var ids []string
	for n := 0; n < attempts; n++ {
		id := c.startContainer(podID, pod, attempt(uint32(n), "sh", "-c", "exit 1"))
		if st := c.waitContainerState(id, runtime.ContainerState_CONTAINER_EXITED, 30*time.Second); st.ExitCode != 1 {
			t.Fatalf("attempt %d exited %d, want 1", n, st.ExitCode)
		}
		ids = append(ids, id)
		if len(ids) > 2 {
			if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: ids[0]}); err != nil {
				t.Fatalf("RemoveContainer of attempt %d: %v", n-2, err)
			}
			ids = ids[1:]
		}
	}
	return ids
}

// TestPodShimExitsAfterRestarts runs the kubelet's sequences for a pod
// whose app container restarts - it exits by itself (exit 1, exit 0), is
// stopped, had an exec - and checks that once the pod is stopped and
// removed its shim exits: a node must not keep one shim per dead pod.
func TestPodShimExitsAfterRestarts(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(c *client, podID string, pod *runtime.PodSandboxConfig) []string
	}{
		{"crash-loop", func(c *client, podID string, pod *runtime.PodSandboxConfig) []string {
			return c.crashLoop(podID, pod, 4)
		}},
		{"exit0-then-running", func(c *client, podID string, pod *runtime.PodSandboxConfig) []string {
			first := c.startContainer(podID, pod, attempt(0, "sh", "-c", "exit 0"))
			c.waitContainerState(first, runtime.ContainerState_CONTAINER_EXITED, 30*time.Second)
			second := c.startContainer(podID, pod, attempt(1, idleCmd...))
			if res := c.execSync(second, 10, "true"); res.ExitCode != 0 {
				c.t.Fatalf("exec in attempt 1 exited %d", res.ExitCode)
			}
			return []string{first, second}
		}},
		{"stopped-then-restarted", func(c *client, podID string, pod *runtime.PodSandboxConfig) []string {
			first := c.startContainer(podID, pod, attempt(0, idleCmd...))
			if _, err := c.rt.StopContainer(rpcCtx(c.t), &runtime.StopContainerRequest{ContainerId: first, Timeout: 10}); err != nil {
				c.t.Fatalf("StopContainer: %v", err)
			}
			second := c.startContainer(podID, pod, attempt(1, idleCmd...))
			if _, err := c.rt.RemoveContainer(rpcCtx(c.t), &runtime.RemoveContainerRequest{ContainerId: first}); err != nil {
				c.t.Fatalf("RemoveContainer of attempt 0: %v", err)
			}
			return []string{second}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			pod := podConfig(t, "shim-"+tc.name)
			podID := c.runPod(pod)
			shim := podShim(t, podID)
			left := tc.run(c, podID, pod)

			// The kubelet's teardown: stop, then remove the containers and the pod.
			if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatalf("StopPodSandbox: %v", err)
			}
			for _, id := range left {
				if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
					t.Fatalf("RemoveContainer %s: %v", id, err)
				}
			}
			if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatalf("RemovePodSandbox: %v", err)
			}
			if !waitShimExit(shim, podID, 30*time.Second) {
				t.Errorf("the shim of removed pod %s (pid %d) still runs 30s after RemovePodSandbox", podID, shim)
			}
		})
	}
}

// TestPodShimExitsAfterStopClientGaveUp stops a pod whose app container
// crash-looped, so that the pause task is the last one its shim serves,
// with a client that gives up while containerd is stuck - the kubelet
// cancels its calls when it shuts down or its timeout runs out. The stop
// must still kill and delete the pause task once containerd answers:
// abandoned halfway, containerd can be left holding a task its shim has
// already forgotten, and the shim, told to shut down only after a
// completed delete, then runs forever. Here the shim exits without the
// kubelet asking again.
func TestPodShimExitsAfterStopClientGaveUp(t *testing.T) {
	c := newClient(t)
	pod := podConfig(t, "shim-gaveup")
	podID := c.runPod(pod)
	shim := podShim(t, podID)
	left := c.crashLoop(podID, pod, 3)

	// A stopped shim holds containerd's calls until it is continued.
	if err := syscall.Kill(shim, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP shim %d: %v", shim, err)
	}
	continued := false
	cont := func() {
		if !continued {
			continued = true
			if err := syscall.Kill(shim, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT shim %d: %v", shim, err)
			}
		}
	}
	t.Cleanup(cont)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID})
	cancel()
	if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Canceled {
		t.Fatalf("StopPodSandbox while the shim was stopped returned %v, want DeadlineExceeded", err)
	}
	cont()

	if !waitShimExit(shim, podID, 30*time.Second) {
		t.Errorf("the shim of pod %s (pid %d) still runs 30s after the StopPodSandbox its client gave up on, with no task left to serve", podID, shim)
	}

	// The kubelet's retry and teardown then succeed.
	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox retry: %v", err)
	}
	if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod is %v after the stop, want SANDBOX_NOTREADY", st.State)
	}
	for _, id := range left {
		if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if !waitShimExit(shim, podID, 30*time.Second) {
		t.Errorf("the shim of removed pod %s (pid %d) still runs 30s after RemovePodSandbox", podID, shim)
	}
}
