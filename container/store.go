package container

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/container/taskio"
	"github.com/crishim/crishim/internal/stats"
	crishimpb "github.com/crishim/crishim/proto"
)

// The container store: one entry per container, whose status changes only
// through the transitions below. Each transition changes the in-memory
// status, writes the status extension in containerd and publishes the CRI
// event as one step, serialised per container, so that what a client
// reads, what a restarted crishim recovers and what the kubelet's evented
// PLEG hears always come in the same order. Operations that act on the
// container in containerd (start, resource update, settling an UNKNOWN
// container, remove) hold the container's own operation lock, so that one
// cannot slip in between another's check and its action, and updates of
// different containers never wait for each other.

// entry is the in-memory view of one container; status queries are
// served from here, never from containerd.
type entry struct {
	id  string
	rec *crishimpb.ContainerRecord
	cfg *runtime.ContainerConfig
	// image is the image spec statuses and lists report, made once: rec
	// and cfg never change, and the kubelet lists every container every
	// second.
	image *runtime.ImageSpec

	// exited is closed once the container's exit (or failed start) has
	// been recorded.
	exited chan struct{}
	// op is the operation lock (a channel so that a waiter can give up).
	op chan struct{}
	// tx serialises transitions: held from the status change through the
	// containerd write and the event, never while waiting on the container.
	tx sync.Mutex

	// mu guards the fields below for short reads and writes; it is never
	// held across a call to containerd.
	mu     sync.Mutex
	spec   *specs.Spec
	state  runtime.ContainerState
	status *crishimpb.ContainerStatusRecord
	pid    uint32
	io     *taskio.IO
	// watched is set while an exit monitor waits for the container's task.
	watched bool
	// listed is the container as ListContainers reports it, shared by
	// every call and marshalled concurrently, so it is never changed once
	// published: a transition publishes a new one (publishListed).
	listed *runtime.Container
	// listedWire is listed's protobuf encoding, made with it: marshalling
	// the label and annotation maps by reflection is most of a list's
	// cost, and the server's codec sends these bytes instead (ListedWire).
	listedWire []byte
	// unknownReason and unknownMessage say why the container is UNKNOWN.
	unknownReason, unknownMessage string
	// postStartErr is set when crishim kills the container because its
	// postStart hook failed; it becomes the exit reason's message.
	postStartErr string
	// oomKilled is set by containerd's OOM event for the container.
	oomKilled bool
	// cgroupFiles keeps a running container's cgroup files open for the
	// kubelet's periodic stats (stats.go); a transition out of RUNNING
	// closes them.
	cgroupFiles *stats.CgroupFiles

	// exitEvent is closed when containerd's exit event for the container's
	// task arrives (oom.go).
	exitEvent     chan struct{}
	exitEventOnce sync.Once
}

func newEntry(id string, rec *crishimpb.ContainerRecord, cfg *runtime.ContainerConfig, spec *specs.Spec, status *crishimpb.ContainerStatusRecord) *entry {
	e := &entry{
		id: id, rec: rec, cfg: cfg, spec: spec, status: status,
		image:     imageSpecOf(rec, cfg),
		state:     recordedState(status),
		exited:    make(chan struct{}),
		op:        make(chan struct{}, 1),
		exitEvent: make(chan struct{}),
	}
	e.publishListed()
	return e
}

// publishListed makes the list entry for e's current state; e.mu is held
// (or e not yet shared). The previous entry stays as it was for the calls
// still marshalling it.
func (e *entry) publishListed() {
	e.listed = &runtime.Container{
		Id:           e.id,
		PodSandboxId: e.rec.SandboxId,
		Metadata:     e.cfg.GetMetadata(),
		Image:        e.image,
		ImageRef:     e.rec.ImageRef,
		ImageId:      e.rec.ImageId,
		State:        e.state,
		CreatedAt:    e.rec.CreatedAt,
		Labels:       e.cfg.GetLabels(),
		Annotations:  e.cfg.GetAnnotations(),
	}
	// A failure (not expected of a message crishim built) leaves no
	// encoding, and the codec marshals the message itself.
	e.listedWire, _ = proto.Marshal(e.listed)
}

// ListedWire is the protobuf encoding of c, an item of a List result, if
// c is still what the store lists for its container; nil otherwise.
func (m *Manager) ListedWire(c *runtime.Container) []byte {
	m.mu.RLock()
	e, ok := m.containers[c.GetId()]
	m.mu.RUnlock()
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.listed != c {
		return nil
	}
	return e.listedWire
}

// recordedState is the state the persisted status says the container is in.
func recordedState(st *crishimpb.ContainerStatusRecord) runtime.ContainerState {
	switch {
	case st.GetFinishedAt() != 0:
		return runtime.ContainerState_CONTAINER_EXITED
	case st.GetStartedAt() != 0:
		return runtime.ContainerState_CONTAINER_RUNNING
	default:
		return runtime.ContainerState_CONTAINER_CREATED
	}
}

// lockOp takes the container's operation lock, or gives up when ctx ends.
func (e *entry) lockOp(ctx context.Context) (unlock func(), err error) {
	select {
	case e.op <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-e.op }) }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("container %s is busy with another operation: %w", e.id, ctx.Err())
	}
}

// State is the container's current state.
// unwatch says no exit monitor waits for e's task any more, though it may
// run on: a stop that finds the task gone records the loss itself.
func (e *entry) unwatch() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.watched = false
}

func (e *entry) State() runtime.ContainerState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// noEvent marks a transition the CRI has no event for.
const noEvent runtime.ContainerEventType = -1

// persist says whether a transition writes the status extension itself.
type persist bool

const (
	persistNow   persist = true
	persistLater persist = false // the caller persists (see markRunning)
)

// transition applies change to e under its lock; a change that returns
// false is refused and nothing else happens. Then the status record is
// written (unless persistLater) and the event change named published,
// before the next transition of e can begin.
func (m *Manager) transition(e *entry, p persist, change func(e *entry) (runtime.ContainerEventType, bool)) bool {
	e.tx.Lock()
	defer e.tx.Unlock()
	e.mu.Lock()
	ev, ok := change(e)
	var cgroupFiles *stats.CgroupFiles
	if ok {
		e.publishListed()
		if e.state != runtime.ContainerState_CONTAINER_RUNNING || ev == runtime.ContainerEventType_CONTAINER_DELETED_EVENT {
			cgroupFiles, e.cgroupFiles = e.cgroupFiles, nil
		}
	}
	e.mu.Unlock()
	if cgroupFiles != nil {
		// Outside e.mu: Close waits for a read in progress.
		cgroupFiles.Close()
	}
	if !ok {
		return false
	}
	if p == persistNow {
		m.persistLocked(e)
	}
	if ev != noEvent {
		m.publish(e, ev)
	}
	return true
}

// persistStatus writes e's current status record (for a transition that
// left it to its caller).
func (m *Manager) persistStatus(e *entry) {
	e.tx.Lock()
	defer e.tx.Unlock()
	m.persistLocked(e)
}

// persistLocked writes the status extension as it is now; e.tx is held,
// so a later status can never be overwritten by an earlier one. A failure
// is logged only: the in-memory state is right, and Recover re-derives
// exits from tasks.
func (m *Manager) persistLocked(e *entry) {
	e.mu.Lock()
	st := proto.Clone(e.status).(*crishimpb.ContainerStatusRecord)
	e.mu.Unlock()
	ctx, cancel := m.cleanupCtx()
	defer cancel()
	// One field-path update rather than load-then-replace: half the round
	// trips on every start and exit, and nothing else in the record can be
	// overwritten with a stale copy.
	err := func() error {
		a, err := typeurl.MarshalAny(st)
		if err != nil {
			return err
		}
		_, err = m.client.ContainerService().Update(ctx, containers.Container{
			ID:         e.id,
			Extensions: map[string]typeurl.Any{ExtensionStatus: a},
		}, "extensions."+ExtensionStatus)
		return err
	}()
	if err != nil && !errdefs.IsNotFound(err) {
		m.log().WithError(err).WithField("container", e.id).Warn("persist container status")
	}
}

// markRunning records that the container's process runs as pid with its
// output on tio. Its start is persisted by the exit monitor, off the
// request's path (a crash in between is covered by Recover, which finds
// the running task); it is published here, so STARTED precedes STOPPED.
// A container the store already saw exit stays exited.
func (m *Manager) markRunning(e *entry, pid uint32, tio *taskio.IO) (newStart bool) {
	m.transition(e, persistLater, func(e *entry) (runtime.ContainerEventType, bool) {
		if e.state == runtime.ContainerState_CONTAINER_EXITED {
			return noEvent, false
		}
		// A recovered container the kubelet already knew running is no news.
		ev := runtime.ContainerEventType_CONTAINER_STARTED_EVENT
		if e.state == runtime.ContainerState_CONTAINER_RUNNING {
			ev = noEvent
		}
		// The caller starts the exit monitor next.
		e.state, e.pid, e.io, e.watched = runtime.ContainerState_CONTAINER_RUNNING, pid, tio, true
		e.unknownReason, e.unknownMessage = "", ""
		if e.status.StartedAt == 0 {
			e.status.StartedAt = time.Now().UnixNano()
			newStart = true
		}
		return ev, true
	})
	return newStart
}

// markExited records the container's exit; a second exit of the same
// container is refused (false), so the exit is persisted and published once.
func (m *Manager) markExited(e *entry, code int32, exitedAt time.Time, reason, message string) bool {
	ok := m.transition(e, persistNow, func(e *entry) (runtime.ContainerEventType, bool) {
		if e.state == runtime.ContainerState_CONTAINER_EXITED {
			return noEvent, false
		}
		if exitedAt.IsZero() {
			exitedAt = time.Now()
		}
		e.state = runtime.ContainerState_CONTAINER_EXITED
		e.io, e.watched = nil, false
		e.unknownReason, e.unknownMessage = "", ""
		if reason == ReasonStartError && e.status.StartedAt == 0 {
			// A start that failed is reported as one that began and
			// ended at once, as other runtimes report it.
			e.status.StartedAt = exitedAt.UnixNano()
		}
		e.status.FinishedAt = exitedAt.UnixNano()
		// StartedAt is taken when task.Start has returned, the exit time by
		// the shim: a process that exits at once can beat the first, and a
		// container must not finish before it started.
		if e.status.FinishedAt < e.status.StartedAt {
			e.status.FinishedAt = e.status.StartedAt
		}
		e.status.ExitCode = code
		e.status.Reason, e.status.Message = exitReason(e, reason, message)
		return runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, true
	})
	closeOnce(e.exited)
	return ok
}

// markUnknown records that crishim cannot tell what the container's task
// is doing: why goes into the status' reason and message. Nothing is
// persisted (the recorded state stays what containerd last confirmed, for
// the next recovery to check again) and the CRI has no event for it.
func (m *Manager) markUnknown(e *entry, cause error) bool {
	return m.transition(e, persistLater, func(e *entry) (runtime.ContainerEventType, bool) {
		if e.state == runtime.ContainerState_CONTAINER_EXITED {
			return noEvent, false
		}
		e.state = runtime.ContainerState_CONTAINER_UNKNOWN
		e.unknownReason = ReasonUnknown
		e.unknownMessage = fmt.Sprintf("crishim could not recover the container's task and checks it again periodically: %v", cause)
		return noEvent, true
	})
}

// markCreated takes an UNKNOWN container back to CREATED once containerd
// says it has no task and it never started.
func (m *Manager) markCreated(e *entry) bool {
	return m.transition(e, persistLater, func(e *entry) (runtime.ContainerEventType, bool) {
		if e.state != runtime.ContainerState_CONTAINER_UNKNOWN {
			return noEvent, false
		}
		e.state = runtime.ContainerState_CONTAINER_CREATED
		e.unknownReason, e.unknownMessage = "", ""
		return noEvent, true
	})
}

// markRemoving persists that the container is being removed, so that a
// crash halfway is finished by the next Recover.
func (m *Manager) markRemoving(e *entry) {
	m.transition(e, persistNow, func(e *entry) (runtime.ContainerEventType, bool) {
		e.status.Removing = true
		return noEvent, true
	})
}

// markPostStartFailed keeps a failed postStart hook's error for the exit
// it is about to cause.
func (m *Manager) markPostStartFailed(e *entry, msg string) {
	m.transition(e, persistLater, func(e *entry) (runtime.ContainerEventType, bool) {
		e.postStartErr = msg
		return noEvent, true
	})
}

// removing reports whether Remove has begun on e.
func (e *entry) removing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status.GetRemoving()
}

// markRemoved drops the container from the store once containerd no
// longer has it.
func (m *Manager) markRemoved(e *entry) {
	m.mu.Lock()
	delete(m.containers, e.id)
	m.mu.Unlock()
	m.transition(e, persistLater, func(*entry) (runtime.ContainerEventType, bool) {
		return runtime.ContainerEventType_CONTAINER_DELETED_EVENT, true
	})
	m.names.Release(e.rec.Name, e.id)
}
