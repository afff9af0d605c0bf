package sandbox

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/events"
)

// SetPublisher makes the manager report pod lifecycle transitions to p;
// call it before serving requests.
func (m *Manager) SetPublisher(p events.Publisher) { m.events = p }

// publish reports a transition of pod p under its own ID, as the kubelet's
// evented PLEG expects of sandbox events. final is the pod's last status
// when it can no longer be looked up. Callers hold none of m's locks.
func (m *Manager) publish(p *pod, typ runtime.ContainerEventType, final *runtime.PodSandboxStatus) {
	if m.events == nil {
		return
	}
	m.events.Publish(events.Event{ID: p.id, SandboxID: p.id, Type: typ, Sandbox: final})
}

// finalStatus is the status of a pod about to be removed.
func (m *Manager) finalStatus(p *pod) *runtime.PodSandboxStatus {
	if m.events == nil {
		return nil
	}
	st, _, err := m.Status(context.Background(), p.id, false)
	if err != nil {
		return nil
	}
	return st
}
