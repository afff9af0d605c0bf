package container

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/events"
	crishimpb "github.com/crishim/crishim/proto"
)

// recorder keeps the events a manager publishes.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) Publish(ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) of(id string) []runtime.ContainerEventType {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtime.ContainerEventType
	for _, ev := range r.evs {
		if ev.ID == id {
			out = append(out, ev.Type)
		}
	}
	return out
}

// persistedStatus reads the status extension straight from containerd.
func (e *env) persistedStatus(t *testing.T, id string) *crishimpb.ContainerStatusRecord {
	t.Helper()
	c, err := e.client.LoadContainer(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := c.Extensions(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := &crishimpb.ContainerStatusRecord{}
	if err := decodeExtension(exts, ExtensionStatus, st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStoreTransitionsPersistAndPublishOnce runs a container through its
// life, with a second exit recorded for it as a late exit handler would:
// each transition is published once and in order, and what containerd
// holds is what the status says.
func TestStoreTransitionsPersistAndPublishOnce(t *testing.T) {
	e := setup(t)
	rec := &recorder{}
	e.m.SetPublisher(rec)
	id := e.create(t, "once", nil, "sh", "-c", "exit 7")
	if err := e.m.Start(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	st := e.waitState(t, id, runtime.ContainerState_CONTAINER_EXITED)
	ent, err := e.m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	if e.m.markExited(ent, 1, time.Now(), ReasonError, "a second exit") {
		t.Error("a second exit of an exited container was recorded")
	}
	if again, _, _ := e.m.Status(e.ctx, id, false); again.ExitCode != 7 || again.FinishedAt != st.FinishedAt {
		t.Errorf("status after a second exit: code %d finished %d, want the first exit (7, %d)", again.ExitCode, again.FinishedAt, st.FinishedAt)
	}
	p := e.persistedStatus(t, id)
	if p.ExitCode != 7 || p.FinishedAt != st.FinishedAt || p.StartedAt != st.StartedAt || p.Reason != ReasonError {
		t.Errorf("persisted status %+v, want what ContainerStatus reports (%d, %d, %d, %s)", p, st.ExitCode, st.StartedAt, st.FinishedAt, st.Reason)
	}
	if err := e.m.Remove(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	want := []runtime.ContainerEventType{
		runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	if got := rec.of(id); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestStoreRemoveDuringStart removes a container while its Start is under
// way. The removal must wait for the start and then stop and remove what
// it started: it used to see the start's flag and fail, or, a moment
// earlier, act on a CREATED container the start was turning into a task.
func TestStoreRemoveDuringStart(t *testing.T) {
	e := setup(t)
	for i := 0; i < 3; i++ {
		id := e.create(t, fmt.Sprintf("racer-%d", i), nil, "sh", "-c", `trap "exit 0" TERM; while true; do sleep 0.1; done`)
		ent, err := e.m.get(id)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan error, 1)
		go func() { started <- e.m.Start(e.ctx, id) }()
		// Remove once the start holds the container.
		waitUntil(t, func() bool { return len(ent.op) == 1 })
		if err := e.m.Remove(e.ctx, id); err != nil {
			t.Fatalf("Remove during Start: %v", err)
		}
		if err := <-started; err != nil {
			t.Errorf("Start the removal waited for: %v", err)
		}
		if _, _, err := e.m.Status(e.ctx, id, false); !errdefs.IsNotFound(err) {
			t.Errorf("status after the removal: %v, want NotFound", err)
		}
		if _, err := e.client.LoadContainer(e.ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("containerd still has the removed container: %v", err)
		}
		// A Start after the removal finds nothing to start.
		if err := e.m.Start(e.ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("Start after Remove: %v, want NotFound", err)
		}
	}
}

// TestStoreOperationLockIsPerContainer holds one container's operation
// lock: an update of another container goes through, one of the held
// container waits and gives up with its client.
func TestStoreOperationLockIsPerContainer(t *testing.T) {
	e := setup(t)
	busy := e.create(t, "busy", nil, "sleep", "60")
	free := e.create(t, "free", nil, "sleep", "60")
	ent, err := e.m.get(busy)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := ent.lockOp(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	res := &runtime.LinuxContainerResources{CpuShares: 512}
	if err := e.m.UpdateResources(e.ctx, free, res); err != nil {
		t.Errorf("update of a container while another one is busy: %v", err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
	defer cancel()
	if err := e.m.UpdateResources(ctx, busy, res); err == nil || ctx.Err() == nil {
		t.Errorf("update of a busy container returned %v before its client gave up", err)
	}
}
