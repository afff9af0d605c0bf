package sandbox

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/idprefix"
	crishimpb "github.com/crishim/crishim/proto"
)

// podState is where a pod is in its life. It changes only through the
// Manager's transition methods in this file, each of which persists what
// a restart must find and publishes what the kubelet's evented PLEG must
// hear, so that no code path can do one and forget the other.
type podState int

const (
	// stateReady: the pause runs and the pod's network is attached.
	stateReady podState = iota
	// stateNotReady: the pause is gone (it exited, or a Stop killed it);
	// the network may still be attached until a Stop completes.
	stateNotReady
	// stateStopped: a Stop completed and was recorded; the pod holds its
	// containerd record, snapshot and files until it is removed.
	stateStopped
	// stateUnknown: recovery could not tell the pod's state (containerd
	// did not answer, or its record was unreadable). The pod keeps all it
	// owns, a re-check completes its recovery, and Stop and Remove still
	// clean it up. CRI has no such state: it is listed NOTREADY.
	stateUnknown
	// stateRemoved: deleted from containerd and the store.
	stateRemoved
)

func (s podState) String() string {
	switch s {
	case stateReady:
		return "ready"
	case stateNotReady:
		return "notready"
	case stateStopped:
		return "stopped"
	case stateUnknown:
		return "unknown"
	case stateRemoved:
		return "removed"
	}
	return fmt.Sprintf("podState(%d)", int(s))
}

// cri is the state the kubelet sees.
func (s podState) cri() runtime.PodSandboxState {
	if s == stateReady {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

// store holds one record per pod. Its lock covers only the map: a pod's
// status has its own lock (pod.mu) and its Stop, Remove and re-check
// their own operation lock (pod.op), so no lock spans two pods.
type store struct {
	mu   sync.RWMutex
	pods map[string]*pod
}

func newStore() *store { return &store{pods: map[string]*pod{}} }

func (s *store) get(id string) (*pod, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.pods[id]
	return p, ok
}

func (s *store) add(p *pod) {
	s.mu.Lock()
	s.pods[p.id] = p
	s.mu.Unlock()
}

// replace puts found in old's place, unless old is no longer there.
func (s *store) replace(old, found *pod) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pods[old.id] != old {
		return false
	}
	s.pods[old.id] = found
	return true
}

func (s *store) delete(p *pod) {
	s.mu.Lock()
	if s.pods[p.id] == p {
		delete(s.pods, p.id)
	}
	s.mu.Unlock()
}

// all is a snapshot of the pods, for loops that take each pod's own lock.
func (s *store) all() []*pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*pod, 0, len(s.pods))
	for _, p := range s.pods {
		out = append(out, p)
	}
	return out
}

func (s *store) resolve(id string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, err := idprefix.Resolve(s.pods, id, "sandbox")
	if err != nil {
		return "", err
	}
	return p.id, nil
}

func (p *pod) getState() podState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// started enters a pod Run completed into the store, running. Run has
// persisted its record already, piece by piece as it made the pod.
func (m *Manager) started(p *pod, pid uint32) {
	p.mu.Lock()
	p.state, p.pid = stateReady, pid
	p.mu.Unlock()
	m.store.add(p)
	m.publish(p, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, nil)
	m.publish(p, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, nil)
}

// pauseKilled marks a pod whose Stop killed its pause. Its STOPPED event
// is owed by whoever completes the stop: the Stop, or (should it fail)
// the exit watcher through stopFailed.
func (m *Manager) pauseKilled(p *pod) {
	p.mu.Lock()
	if p.state == stateReady {
		p.state = stateNotReady
	}
	p.mu.Unlock()
}

// pauseExited marks a pod whose pause task exited (or vanished) and
// reports whether a Stop owns the rest: one under way, or done already.
// Nothing is persisted: the exit is containerd's to remember.
func (m *Manager) pauseExited(p *pod) (stopOwned bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stateReady {
		p.state = stateNotReady
	}
	p.exited = true
	return p.stopping || p.state == stateStopped || p.state == stateRemoved
}

// stopped records a completed Stop in the pod's containerd record (c nil:
// the container is gone) and reports it, once per pod.
func (m *Manager) stopped(ctx context.Context, p *pod, c containerd.Container) error {
	if c != nil {
		err := updateRecord(ctx, c, p, func(r *crishimpb.SandboxRecord) {
			r.Stopped, r.NetworkReady = true, false
		})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("record stop of pod %s: %w", p.id, err)
		}
	}
	p.mu.Lock()
	p.state, p.stopping, p.reason = stateStopped, false, ""
	p.mu.Unlock()
	if m.claimStopReport(p) {
		m.publish(p, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, nil)
	}
	return nil
}

// removed deletes the pod's containerd container (its record), then its
// files, and drops it from the store and its name; the DELETED event
// carries its last status, as it can no longer be looked up.
func (m *Manager) removed(ctx context.Context, p *pod) error {
	final := m.finalStatus(p)
	if err := m.client.ContainerService().Delete(ctx, p.id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete pause container of pod %s: %w", p.id, err)
	}
	for _, dir := range []string{p.dir, p.stateDir} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove pod %s: %w", p.id, err)
		}
	}
	p.mu.Lock()
	p.state = stateRemoved
	p.mu.Unlock()
	m.store.delete(p)
	m.names.Release(p.name, p.id)
	m.publish(p, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, final)
	return nil
}

// unknown enters a pod whose recovery failed into the store, holding all
// it owns, with why; recheck keeps trying to complete its recovery.
func (m *Manager) unknown(p *pod, why error) {
	p.mu.Lock()
	p.state, p.reason = stateUnknown, why.Error()
	p.mu.Unlock()
	m.store.add(p)
	m.logger(p.id).WithError(why).Error("pod sandbox not fully recovered: listed NOTREADY, kept with its network until a re-check succeeds or it is removed")
}

// stillUnknown updates why an Unknown pod is not recovered yet.
func (m *Manager) stillUnknown(p *pod, why error) {
	p.mu.Lock()
	p.reason = why.Error()
	p.mu.Unlock()
}

// recovered completes the recovery of Unknown pod p with what a re-check
// found: found takes p's place in the store (it may know the record p
// lacked). A pod found running is reported started, as the kubelet last
// saw it NOTREADY. The caller holds p.op.
func (m *Manager) recovered(p, found *pod) bool {
	found.mu.Lock()
	// Whatever a Stop or exit watcher already reported stays reported.
	p.mu.Lock()
	found.stopReported = p.stopReported
	p.mu.Unlock()
	state := found.state
	found.mu.Unlock()
	if !m.store.replace(p, found) {
		return false
	}
	p.mu.Lock()
	p.state, p.superseded = stateRemoved, found
	p.mu.Unlock()
	if state == stateReady {
		m.publish(found, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, nil)
	}
	return true
}

// Unknown is the number of pods whose recovery is not complete.
func (m *Manager) Unknown() int {
	n := 0
	for _, p := range m.store.all() {
		if p.getState() == stateUnknown {
			n++
		}
	}
	return n
}
