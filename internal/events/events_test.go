package events

import (
	"errors"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func recv(t *testing.T, s *Subscription) *runtime.ContainerEventResponse {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatalf("subscription closed: %v", s.Err())
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

func TestFanOutInOrder(t *testing.T) {
	b := NewBroker(8, func(ev Event) *runtime.ContainerEventResponse {
		return &runtime.ContainerEventResponse{
			ContainerId: ev.ID, ContainerEventType: ev.Type,
			PodSandboxStatus: &runtime.PodSandboxStatus{Id: ev.SandboxID},
		}
	})
	s1, s2 := b.Subscribe(), b.Subscribe()
	defer s1.Close()
	defer s2.Close()
	at := time.Unix(10, 0)
	types := []runtime.ContainerEventType{
		runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	for _, typ := range types {
		b.Publish(Event{ID: "c1", SandboxID: "p1", Type: typ, At: at})
	}
	for _, s := range []*Subscription{s1, s2} {
		for _, typ := range types {
			ev := recv(t, s)
			if ev.ContainerId != "c1" || ev.ContainerEventType != typ || ev.CreatedAt != at.UnixNano() || ev.PodSandboxStatus.GetId() != "p1" {
				t.Errorf("got %v, want %v of c1 in p1", ev, typ)
			}
		}
	}
}

func TestSlowSubscriberIsDisconnected(t *testing.T) {
	b := NewBroker(2, nil)
	slow, fast := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	for i := 0; i < 3; i++ {
		b.Publish(Event{ID: "c", Type: runtime.ContainerEventType_CONTAINER_STARTED_EVENT})
		recv(t, fast)
	}
	// The slow one got its buffer's worth, then its channel closed.
	for i := 0; i < 2; i++ {
		recv(t, slow)
	}
	if _, ok := <-slow.C; ok {
		t.Fatal("slow subscriber still open after overflowing its buffer")
	}
	if !errors.Is(slow.Err(), ErrSlowSubscriber) {
		t.Errorf("slow subscriber error %v, want ErrSlowSubscriber", slow.Err())
	}
	if fast.Err() != nil || b.Subscribers() != 1 {
		t.Errorf("fast subscriber affected: err %v, %d subscribers", fast.Err(), b.Subscribers())
	}
	// The fast one keeps receiving.
	b.Publish(Event{ID: "c2"})
	if ev := recv(t, fast); ev.ContainerId != "c2" {
		t.Errorf("got %v", ev)
	}
	slow.Close() // after a disconnect, Close is harmless
}

func TestCloseEndsSubscription(t *testing.T) {
	b := NewBroker(0, nil)
	s := b.Subscribe()
	s.Close()
	s.Close()
	if _, ok := <-s.C; ok {
		t.Fatal("channel open after Close")
	}
	if s.Err() != nil {
		t.Errorf("Close left error %v", s.Err())
	}
	b.Publish(Event{ID: "x"}) // no subscribers: nothing to do, no panic
}

func TestEnricherCanDrop(t *testing.T) {
	calls := 0
	b := NewBroker(4, func(ev Event) *runtime.ContainerEventResponse {
		calls++
		if ev.SandboxID == "" {
			return nil
		}
		return &runtime.ContainerEventResponse{ContainerId: ev.ID}
	})
	b.Publish(Event{ID: "nobody-listens"})
	if calls != 0 {
		t.Errorf("enricher ran %d times without subscribers", calls)
	}
	s := b.Subscribe()
	defer s.Close()
	b.Publish(Event{ID: "orphan"})
	b.Publish(Event{ID: "kept", SandboxID: "p"})
	if ev := recv(t, s); ev.ContainerId != "kept" {
		t.Errorf("got %v, want the orphan dropped", ev)
	}
}

func TestNilBrokerPublish(t *testing.T) {
	var b *Broker
	b.Publish(Event{ID: "x"})
}
