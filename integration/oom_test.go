//go:build linux

package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/faultpoint"
)

// armFaultPoints restarts crishim with the fault points of spec armed
// (faultpoint's "point=action,..." form) and returns the disarm, which
// restarts it without them; the test's cleanup disarms if it did not.
func (c *client) armFaultPoints(spec string) (disarm func()) {
	t := c.t
	t.Helper()
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	crishim.SetEnv(faultpoint.EnvVar + "=" + spec)
	if err := crishim.Restart(); err != nil {
		t.Fatalf("restart crishim with %s armed: %v", spec, err)
	}
	c.reconnect()
	var once sync.Once
	disarm = func() {
		once.Do(func() {
			crishim.SetEnv()
			if err := crishim.Restart(); err != nil {
				t.Errorf("restart crishim without fault points: %v", err)
			}
			c.reconnect()
		})
	}
	t.Cleanup(disarm)
	return disarm
}

// subscribeEvents follows the node's CRI events until the test ends.
func subscribeEvents(t *testing.T, c *client) <-chan *runtime.ContainerEventResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := c.rt.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	evc := make(chan *runtime.ContainerEventResponse, 1024)
	go func() {
		defer close(evc)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case evc <- ev:
			default: // the test stopped reading
			}
		}
	}()
	return evc
}

// eventsOf reads evc until id's event of type until arrives and returns
// every event of id seen until then, plus those arriving within settle
// after it (a duplicate would come at once).
func eventsOf(t *testing.T, evc <-chan *runtime.ContainerEventResponse, id string, until runtime.ContainerEventType, settle time.Duration) []runtime.ContainerEventType {
	t.Helper()
	var got []runtime.ContainerEventType
	deadline := time.After(2 * time.Minute)
	var quiet <-chan time.Time
	for {
		select {
		case ev, ok := <-evc:
			if !ok {
				t.Fatalf("event stream ended; events of %s so far: %v", id, got)
			}
			if ev.ContainerId != id {
				continue
			}
			got = append(got, ev.ContainerEventType)
			if ev.ContainerEventType == until && quiet == nil {
				quiet = time.After(settle)
			}
		case <-quiet:
			return got
		case <-deadline:
			t.Fatalf("no %v event for %s; got %v", until, id, got)
		}
	}
}

func count(evs []runtime.ContainerEventType, typ runtime.ContainerEventType) int {
	n := 0
	for _, e := range evs {
		if e == typ {
			n++
		}
	}
	return n
}

// allocCmd needs far more than the 20 MiB limit: dd's 64 MiB block is
// filled from /dev/zero, so every page of it is touched.
var allocCmd = []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}

func limited(name string, cmd ...string) *runtime.ContainerConfig {
	cfg := containerConfig(name, env.BusyboxImage, cmd...)
	cfg.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 20 << 20}
	return cfg
}

// TestOOMKilled runs containers under a 20 MiB memory limit: the one the
// kernel OOM-kills reads OOMKilled/137 with a single STOPPED event, while
// a plain failure under the same limit stays Error and a container that
// survives the OOM kill of a child and exits 0 stays Completed. Then
// again with the memory cgroup's OOM counter hidden from crishim (as a
// systemd scope removed at exit hides it): containerd's OOM event alone
// must name the OOM kill.
func TestOOMKilled(t *testing.T) {
	check := func(t *testing.T, c *client) {
		evc := subscribeEvents(t, c)
		pod := podConfig(t, "oom")
		podID := c.runPod(pod)

		oomID := c.startContainer(podID, pod, limited("hog", allocCmd...))
		st := c.waitContainerState(oomID, runtime.ContainerState_CONTAINER_EXITED, time.Minute)
		if st.Reason != "OOMKilled" || st.ExitCode != 137 {
			t.Errorf("container over its memory limit: reason %q exit %d (%s), want OOMKilled 137", st.Reason, st.ExitCode, st.Message)
		}
		if evs := eventsOf(t, evc, oomID, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, 2*time.Second); count(evs, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT) != 1 {
			t.Errorf("events of the OOM-killed container: %v, want one STOPPED", evs)
		}

		failID := c.startContainer(podID, pod, limited("fail", "sh", "-c", "exit 3"))
		if st := c.waitContainerState(failID, runtime.ContainerState_CONTAINER_EXITED, time.Minute); st.Reason != "Error" || st.ExitCode != 3 {
			t.Errorf("failing container: reason %q exit %d, want Error 3", st.Reason, st.ExitCode)
		}
		childID := c.startContainer(podID, pod, limited("child", "sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 0"))
		if st := c.waitContainerState(childID, runtime.ContainerState_CONTAINER_EXITED, time.Minute); st.Reason != "Completed" || st.ExitCode != 0 {
			t.Errorf("container whose child was OOM-killed, exiting 0: reason %q exit %d, want Completed 0", st.Reason, st.ExitCode)
		}
	}
	t.Run("cgroupfs", func(t *testing.T) { check(t, newClient(t)) })
	t.Run("event-only", func(t *testing.T) {
		c := newClient(t)
		c.trackConns()
		c.armFaultPoints("container.readOOMCounter=error")
		check(t, c)
	})
}
