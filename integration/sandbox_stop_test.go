//go:build linux

package integration

import (
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pauseTask kills the pause process of pod podID (sig != 0) and reports
// whether its task is still in containerd.
func pauseTask(t *testing.T, podID string, sig syscall.Signal) bool {
	t.Helper()
	client, ctx, done := containerdNS(t)
	defer done()
	c, err := client.LoadContainer(ctx, podID)
	if err != nil {
		t.Fatalf("pause container of %s: %v", podID, err)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return false
	} else if err != nil {
		t.Fatalf("pause task of %s: %v", podID, err)
	}
	if sig != 0 {
		if err := task.Kill(ctx, sig); err != nil {
			t.Fatalf("kill the pause of %s: %v", podID, err)
		}
	}
	return true
}

// TestPodStopReportedOnce: a pod's stop is one transition with one STOPPED
// event, whoever sees it first, and the exited pause task is deleted.
func TestPodStopReportedOnce(t *testing.T) {
	stopped := runtime.ContainerEventType_CONTAINER_STOPPED_EVENT

	// The pause dies, and the kubelet then stops the pod: the death is
	// reported, the stop is not reported again.
	t.Run("pause death then stop", func(t *testing.T) {
		c := newClient(t)
		evc := subscribeEvents(t, c)
		pod := podConfig(t, "pausedeath")
		podID := c.runPod(pod)
		pauseTask(t, podID, syscall.SIGKILL)
		deadline := time.Now().Add(time.Minute)
		for c.podStatus(podID).State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			if time.Now().After(deadline) {
				t.Fatal("pod still READY a minute after its pause was killed")
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.removePod(podID)
		evs := eventsOf(t, evc, podID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, time.Second)
		if n := count(evs, stopped); n != 1 {
			t.Errorf("events of a pod whose pause died before StopPodSandbox: %v, want one STOPPED", evs)
		}
	})

	// A stop fails before it kills the pause (fault point): the pause
	// dying afterwards is still reported, once, and its task deleted.
	t.Run("failed stop then pause death", func(t *testing.T) {
		c := newClient(t)
		c.trackConns()
		disarm := c.armFaultPoints("sandbox.beforeKillPause=error")
		evc := subscribeEvents(t, c)
		pod := podConfig(t, "failedstop")
		podID := c.runPod(pod)
		if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err == nil {
			t.Fatal("StopPodSandbox succeeded through the fault point")
		}
		if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod %v after a stop that failed before killing its pause, want READY", st.State)
		}
		pauseTask(t, podID, syscall.SIGKILL)
		evs := eventsOf(t, evc, podID, stopped, 2*time.Second)
		if n := count(evs, stopped); n != 1 {
			t.Errorf("events after the pause died: %v, want one STOPPED", evs)
		}
		if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %v after its pause died, want NOTREADY", st.State)
		}
		deadline := time.Now().Add(time.Minute)
		for pauseTask(t, podID, 0) {
			if time.Now().After(deadline) {
				t.Fatal("the exited pause task is still in containerd a minute after it died")
			}
			time.Sleep(50 * time.Millisecond)
		}
		disarm()
	})
}
