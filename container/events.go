package container

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/events"
	"github.com/crishim/crishim/internal/stats"
)

// SetPublisher makes the manager report container lifecycle transitions
// to p; call it before serving requests.
func (m *Manager) SetPublisher(p events.Publisher) { m.events = p }

func (m *Manager) rates() *stats.Rates { return m.cpu }

// publish reports a transition of e; callers hold none of e's or the
// manager's locks, as the publisher looks statuses up.
func (m *Manager) publish(e *entry, typ runtime.ContainerEventType) {
	if m.events == nil {
		return
	}
	m.events.Publish(events.Event{ID: e.id, SandboxID: e.rec.SandboxId, Type: typ})
}

// PodStatuses reports every container of pod podID, for pod sandbox
// status and events.
func (m *Manager) PodStatuses(podID string) []*runtime.ContainerStatus {
	var out []*runtime.ContainerStatus
	for _, e := range m.podEntries(podID) {
		st, _, err := m.Status(context.Background(), e.id, false)
		if err == nil {
			out = append(out, st)
		}
	}
	return out
}
