// Package events fans container and pod sandbox lifecycle events out to
// GetContainerEvents subscribers (the kubelet's evented PLEG).
//
// Slow subscribers are disconnected, not silently skipped: a PLEG that
// missed an event holds a stale pod status until its next relist, while a
// broken stream makes the kubelet fall back to relisting at once and
// subscribe again.
package events

import (
	"errors"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Event is one lifecycle transition as a domain manager sees it.
type Event struct {
	// ID is the container's ID, or the sandbox's own ID for pod events.
	ID        string
	SandboxID string
	Type      runtime.ContainerEventType
	At        time.Time
	// Sandbox is the pod's status at the transition when the publisher
	// knows it and the pod can no longer be looked up (a removed pod).
	Sandbox *runtime.PodSandboxStatus
}

// Publisher is what domain managers publish their transitions to.
type Publisher interface {
	Publish(Event)
}

// Enricher turns an event into the CRI message, adding the pod's and its
// containers' statuses; nil drops the event (its pod is unknown, and the
// kubelet cannot place an event without one). It runs on the publisher's
// goroutine, which must hold none of the locks the statuses need.
type Enricher func(Event) *runtime.ContainerEventResponse

// ErrSlowSubscriber ends a subscription whose buffer overflowed.
var ErrSlowSubscriber = errors.New("event subscriber fell behind and was disconnected; events were lost")

// DefaultBuffer is how many events a subscriber may lag behind.
const DefaultBuffer = 1024

// Broker delivers every published event to every current subscriber.
type Broker struct {
	enrich Enricher
	buffer int

	// pubMu keeps enrichment and delivery of one event together, so that
	// events reach subscribers in the order they were published.
	pubMu sync.Mutex

	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewBroker returns a broker; buffer <= 0 selects DefaultBuffer and a nil
// enrich sends bare events.
func NewBroker(buffer int, enrich Enricher) *Broker {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Broker{enrich: enrich, buffer: buffer, subs: map[*Subscription]struct{}{}}
}

// Subscription receives events on C until it is closed or falls behind;
// then C is closed and Err says why.
type Subscription struct {
	C <-chan *runtime.ContainerEventResponse

	b   *Broker
	ch  chan *runtime.ContainerEventResponse
	err error // guarded by b.mu
}

// Subscribe registers a new subscriber.
func (b *Broker) Subscribe() *Subscription {
	ch := make(chan *runtime.ContainerEventResponse, b.buffer)
	s := &Subscription{C: ch, b: b, ch: ch}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.dropLocked(s, nil)
}

// Err is ErrSlowSubscriber when the broker ended the subscription.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

func (b *Broker) dropLocked(s *Subscription, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	close(s.ch)
}

// Subscribers is the number of live subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish sends ev to every subscriber without ever blocking on one.
func (b *Broker) Publish(ev Event) {
	if b == nil {
		return
	}
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	if n == 0 {
		return // nobody listens: skip the status lookups
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	msg := &runtime.ContainerEventResponse{ContainerId: ev.ID, ContainerEventType: ev.Type, PodSandboxStatus: ev.Sandbox}
	if b.enrich != nil {
		if msg = b.enrich(ev); msg == nil {
			return
		}
	}
	msg.CreatedAt = ev.At.UnixNano()

	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- msg:
		default:
			b.dropLocked(s, ErrSlowSubscriber)
		}
	}
}
