//go:build linux

package integration

import (
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerEvents subscribes like the kubelet's evented PLEG and sees
// a pod's and a container's lifecycle in order, each event carrying the
// pod's status and its containers'.
func TestContainerEvents(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	evc := subscribeEvents(t, c)

	pod := podConfig(t, "events")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	c.removePod(podID)

	type seen struct {
		id  string
		typ runtime.ContainerEventType
	}
	want := []seen{
		{podID, runtime.ContainerEventType_CONTAINER_CREATED_EVENT},
		{podID, runtime.ContainerEventType_CONTAINER_STARTED_EVENT},
		{ctrID, runtime.ContainerEventType_CONTAINER_CREATED_EVENT},
		{ctrID, runtime.ContainerEventType_CONTAINER_STARTED_EVENT},
		{ctrID, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{ctrID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT},
		{podID, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{podID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT},
	}
	var got []seen
	var lastAt int64
	timeout := time.After(time.Minute)
	for len(got) < len(want) {
		select {
		case ev, ok := <-evc:
			if !ok {
				t.Fatalf("event stream ended after %v", got)
			}
			if ev.PodSandboxStatus.GetId() != podID {
				continue // another test's pod
			}
			if ev.PodSandboxStatus.GetMetadata().GetUid() != pod.Metadata.Uid {
				t.Errorf("event %v: pod status without the pod's metadata", ev.ContainerEventType)
			}
			if ev.CreatedAt < lastAt {
				t.Errorf("event %v at %d before the previous one at %d", ev.ContainerEventType, ev.CreatedAt, lastAt)
			}
			lastAt = ev.CreatedAt
			if ev.ContainerId == ctrID && ev.ContainerEventType == runtime.ContainerEventType_CONTAINER_STARTED_EVENT {
				if len(ev.ContainersStatuses) != 1 || ev.ContainersStatuses[0].GetState() != runtime.ContainerState_CONTAINER_RUNNING {
					t.Errorf("STARTED event container statuses %v, want the running container", ev.ContainersStatuses)
				}
			}
			if ev.ContainerId == ctrID && ev.ContainerEventType == runtime.ContainerEventType_CONTAINER_STOPPED_EVENT {
				if len(ev.ContainersStatuses) != 1 || ev.ContainersStatuses[0].GetState() != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("STOPPED event container statuses %v, want the exited container", ev.ContainersStatuses)
				}
			}
			got = append(got, seen{ev.ContainerId, ev.ContainerEventType})
		case <-timeout:
			t.Fatalf("events after a minute: %v, want %v", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}
