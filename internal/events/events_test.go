package events

import (
	"errors"
	"fmt"
	"strings"
	"sync"
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
	b := NewBroker(8, func(ev Event) (*runtime.ContainerEventResponse, error) {
		return &runtime.ContainerEventResponse{
			ContainerId: ev.ID, ContainerEventType: ev.Type,
			PodSandboxStatus: &runtime.PodSandboxStatus{Id: ev.SandboxID},
		}, nil
	})
	s1, s2 := b.Subscribe(), b.Subscribe()
	defer s1.Close()
	defer s2.Close()
	types := []runtime.ContainerEventType{
		runtime.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtime.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtime.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtime.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	for _, typ := range types {
		b.Publish(Event{ID: "c1", SandboxID: "p1", Type: typ})
	}
	for _, s := range []*Subscription{s1, s2} {
		var last int64
		for _, typ := range types {
			ev := recv(t, s)
			if ev.ContainerId != "c1" || ev.ContainerEventType != typ || ev.PodSandboxStatus.GetId() != "p1" {
				t.Errorf("got %v, want %v of c1 in p1", ev, typ)
			}
			if ev.CreatedAt <= last {
				t.Errorf("%v at %d, not after the previous event at %d", typ, ev.CreatedAt, last)
			}
			last = ev.CreatedAt
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

// An event that cannot be enriched would be missing from every stream:
// every subscription ends instead, so that its client relists, and the
// broker serves new subscribers as before.
func TestEnrichFailureEndsEverySubscription(t *testing.T) {
	calls := 0
	b := NewBroker(4, func(ev Event) (*runtime.ContainerEventResponse, error) {
		calls++
		if ev.SandboxID == "" {
			return nil, errors.New("no such pod")
		}
		return &runtime.ContainerEventResponse{ContainerId: ev.ID}, nil
	})
	b.Publish(Event{ID: "nobody-listens"})
	if calls != 0 {
		t.Errorf("enricher ran %d times without subscribers", calls)
	}
	s1, s2 := b.Subscribe(), b.Subscribe()
	b.Publish(Event{ID: "before", SandboxID: "p"})
	b.Publish(Event{ID: "orphan"})
	b.Publish(Event{ID: "after", SandboxID: "p"})
	for _, s := range []*Subscription{s1, s2} {
		if ev := recv(t, s); ev.ContainerId != "before" {
			t.Errorf("got %v, want the event before the orphan", ev)
		}
		if ev, ok := <-s.C; ok {
			t.Fatalf("got %v after an event that could not be delivered, want the subscription ended", ev)
		}
		if !errors.Is(s.Err(), ErrEventLost) || !strings.Contains(s.Err().Error(), "orphan") {
			t.Errorf("subscription ended with %v, want ErrEventLost naming the orphan", s.Err())
		}
	}
	s3 := b.Subscribe()
	defer s3.Close()
	b.Publish(Event{ID: "later", SandboxID: "p"})
	if ev := recv(t, s3); ev.ContainerId != "later" {
		t.Errorf("new subscriber got %v", ev)
	}
}

// Concurrent publishers: every subscriber sees each event once, with
// strictly increasing times in the order it receives them, each time no
// later than the statuses were read (the kubelet drops a status older than
// the one it holds, and trusts one as fresh as its time).
func TestConcurrentPublishersStampInDeliveryOrder(t *testing.T) {
	const publishers, each = 8, 200
	var readMu sync.Mutex
	readAt := map[string]int64{}
	b := NewBroker(publishers*each, func(ev Event) (*runtime.ContainerEventResponse, error) {
		readMu.Lock()
		readAt[ev.ID] = time.Now().UnixNano()
		readMu.Unlock()
		return &runtime.ContainerEventResponse{ContainerId: ev.ID}, nil
	})
	subs := []*Subscription{b.Subscribe(), b.Subscribe()}
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				b.Publish(Event{ID: fmt.Sprintf("c%d-%d", p, i), SandboxID: "p"})
			}
		}()
	}
	wg.Wait()
	for _, s := range subs {
		s.Close() // buffered events stay readable
		seen := map[string]bool{}
		var last int64
		for ev := range s.C {
			if seen[ev.ContainerId] {
				t.Fatalf("%s delivered twice", ev.ContainerId)
			}
			seen[ev.ContainerId] = true
			if ev.CreatedAt <= last {
				t.Fatalf("%s stamped %d, not after the event before it (%d)", ev.ContainerId, ev.CreatedAt, last)
			}
			last = ev.CreatedAt
			if ev.CreatedAt > readAt[ev.ContainerId] {
				t.Fatalf("%s stamped %d, after its statuses were read at %d", ev.ContainerId, ev.CreatedAt, readAt[ev.ContainerId])
			}
		}
		if len(seen) != publishers*each {
			t.Errorf("%d events delivered, want %d", len(seen), publishers*each)
		}
	}
}

// Closing the broker (crishim shutting down) ends every subscription with
// ErrClosed, and a subscription made afterwards starts out ended.
func TestBrokerCloseEndsSubscriptions(t *testing.T) {
	b := NewBroker(4, nil)
	s := b.Subscribe()
	b.Publish(Event{ID: "c"})
	b.Close()
	if ev := recv(t, s); ev.ContainerId != "c" {
		t.Errorf("got %v, want the event published before Close", ev)
	}
	if _, ok := <-s.C; ok || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("after Close: open %v, err %v; want ended with ErrClosed", ok, s.Err())
	}
	late := b.Subscribe()
	if _, ok := <-late.C; ok || !errors.Is(late.Err(), ErrClosed) {
		t.Errorf("subscription after Close: open %v, err %v; want ended with ErrClosed", ok, late.Err())
	}
	late.Close()
	if b.Subscribers() != 0 {
		t.Errorf("%d subscribers after Close", b.Subscribers())
	}
}

func TestNilBrokerPublish(t *testing.T) {
	var b *Broker
	b.Publish(Event{ID: "x"})
}
