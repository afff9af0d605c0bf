//go:build linux

package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerdHolds lists what containerd still keeps of container id: the
// container record, its task, its active snapshot.
func containerdHolds(t *testing.T, id string) []string {
	t.Helper()
	client, ctx, done := containerdNS(t)
	defer done()
	var held []string
	if _, err := client.ContainerService().Get(ctx, id); err == nil {
		held = append(held, "container record")
	} else if !errdefs.IsNotFound(err) {
		t.Fatalf("get container %s: %v", id, err)
	}
	if _, err := client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); err == nil {
		held = append(held, "task")
	} else if !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("get task %s: %v", id, err)
	}
	if _, err := client.SnapshotService("overlayfs").Stat(ctx, id); err == nil {
		held = append(held, "snapshot")
	} else if !errdefs.IsNotFound(err) {
		t.Fatalf("stat snapshot %s: %v", id, err)
	}
	return held
}

// TestRecoverUnknownContainer restarts crishim with a fault at each step of
// a running container's recovery (finding its task, reading the task's
// status, re-attaching its IO). The container must be listed UNKNOWN with
// a reason, not RUNNING with nothing watching it, and the kubelet's
// teardown must still clean up everything it owns without waiting out a
// deadline: once crishim had registered such a container RUNNING with no
// exit monitor, StopContainer waited out its whole timeout, the stopper
// sent SIGKILL every 5 s forever, and RemoveContainer and RemovePodSandbox
// hung.
func TestRecoverUnknownContainer(t *testing.T) {
	for _, tc := range []struct {
		point string
		// teardown is how the kubelet gets rid of it: through StopContainer
		// and RemoveContainer, or RemoveContainer alone, or the pod's stop
		// and removal alone.
		teardown string
	}{
		{"container.recoverTask", "stop-remove"},
		{"container.recoverStatus", "pod"},
		{"container.recoverIO", "remove"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			c := newClient(t)
			pod := podConfig(t, "unknown")
			podID := c.runPod(pod)
			shim := podShim(t, podID)
			id := c.startContainer(podID, pod, containerConfig("app", env.BusyboxImage, idleCmd...))

			disarm := c.armFaultPoints(tc.point + "=error")
			st := c.containerStatus(id)
			if st.State != runtime.ContainerState_CONTAINER_UNKNOWN {
				t.Fatalf("container recovered through a failing %s is %v, want CONTAINER_UNKNOWN", tc.point, st.State)
			}
			if st.Reason == "" || !strings.Contains(st.Message, tc.point) {
				t.Errorf("UNKNOWN container's reason %q, message %q: want a reason and the failure (%s) in the message", st.Reason, st.Message, tc.point)
			}
			list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: id}})
			if err != nil || len(list.Containers) != 1 || list.Containers[0].State != runtime.ContainerState_CONTAINER_UNKNOWN {
				t.Errorf("ListContainers: %v, %v; want the container listed UNKNOWN", list, err)
			}

			// No call may wait out its client's deadline: 30 s is far
			// more than any of them needs with a 2 s grace.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			began := time.Now()
			switch tc.teardown {
			case "stop-remove":
				if _, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
					t.Fatalf("StopContainer of an UNKNOWN container: %v", err)
				}
				if st := c.containerStatus(id); st.State != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("container %v after StopContainer returned, want EXITED", st.State)
				}
				if held := containerdHolds(t, id); contains(held, "task") {
					t.Errorf("containerd still holds the stopped container's task")
				}
				if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
					t.Fatalf("RemoveContainer: %v", err)
				}
			case "remove":
				if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
					t.Fatalf("RemoveContainer of an UNKNOWN container: %v", err)
				}
			}
			if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatalf("StopPodSandbox: %v", err)
			}
			if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatalf("RemovePodSandbox: %v", err)
			}
			t.Logf("teardown %s of the UNKNOWN container and its pod took %s", tc.teardown, time.Since(began).Round(time.Millisecond))
			c.assertPodGone(podID, []string{id})
			if held := containerdHolds(t, id); len(held) > 0 {
				t.Errorf("containerd still holds the removed container's %v", held)
			}
			if !waitShimExit(shim, podID, 30*time.Second) {
				t.Errorf("the shim of removed pod %s (pid %d) still runs 30s after RemovePodSandbox", podID, shim)
			}
			disarm()
		})
	}
}

// TestRecoverUnknownHealed restarts crishim with a fault that fails a
// running container's task lookup once: the periodic re-check must find
// the task when containerd answers again and watch it as a RUNNING
// container, so that its exit is recorded with its code.
func TestRecoverUnknownHealed(t *testing.T) {
	for _, point := range []string{"container.recoverTask", "container.recoverStatus", "container.recoverIO"} {
		t.Run(point, func(t *testing.T) {
			c := newClient(t)
			pod := podConfig(t, "healed")
			podID := c.runPod(pod)
			id := c.startContainer(podID, pod, containerConfig("app", env.BusyboxImage,
				"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo bye; exit 3"))

			disarm := c.armFaultPoints(point + "=error:1")
			began := time.Now()
			st := c.waitContainerState(id, runtime.ContainerState_CONTAINER_RUNNING, time.Minute)
			t.Logf("RUNNING again %s after crishim answered", time.Since(began).Round(time.Millisecond))
			// It got there through the UNKNOWN state and its re-check, not
			// past a fault that never fired.
			crishim, err := env.Crishim()
			if err != nil {
				t.Fatal(err)
			}
			logged, err := os.ReadFile(crishim.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			wentUnknown := false
			for _, line := range strings.Split(string(logged), "\n") {
				wentUnknown = wentUnknown || strings.Contains(line, "container state unknown") && strings.Contains(line, "container="+id)
			}
			if !wentUnknown {
				t.Errorf("crishim's log does not say container %s was UNKNOWN after the restart", id)
			}
			if st.Reason != "" || st.Message != "" {
				t.Errorf("healed container still reports reason %q, message %q", st.Reason, st.Message)
			}
			if res := c.execSync(id, 10, "touch", "/tmp/go"); res.ExitCode != 0 {
				t.Fatalf("exec in the healed container exited %d", res.ExitCode)
			}
			st = c.waitContainerState(id, runtime.ContainerState_CONTAINER_EXITED, time.Minute)
			if st.ExitCode != 3 || st.Reason != "Error" {
				t.Errorf("healed container exited with %d (%q, %q), want 3 (Error)", st.ExitCode, st.Reason, st.Message)
			}
			// Its output after the restart reached the log through the
			// re-attached IO.
			waitLog(t, pod.LogDirectory+"/app.log", 30*time.Second, func(l map[string][]string) bool {
				return contains(l["stdout"], "bye")
			})
			disarm()
		})
	}
}
