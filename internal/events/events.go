// Package events fans container and pod sandbox lifecycle events out to
// GetContainerEvents subscribers (the kubelet's evented PLEG).
//
// A subscriber sees every event published while it is subscribed, once and
// in the order they were published, or its subscription ends with an error:
// slow subscribers are disconnected and an event that cannot be delivered
// ends every subscription, rather than leaving a hole in a stream that
// still looks healthy. A PLEG that missed an event holds a stale pod status
// until its next relist (five minutes in the kubelet's evented mode), while
// a broken stream makes the kubelet relist at once and subscribe again.
package events

import (
	"errors"
	"fmt"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Event is one lifecycle transition as a domain manager sees it. It is
// published after the transition shows in the statuses the manager reports.
type Event struct {
	// ID is the container's ID, or the sandbox's own ID for pod events.
	ID        string
	SandboxID string
	Type      runtime.ContainerEventType
	// Sandbox is the pod's status at the transition when the publisher
	// knows it and the pod can no longer be looked up (a removed pod).
	Sandbox *runtime.PodSandboxStatus
}

// Publisher is what domain managers publish their transitions to.
type Publisher interface {
	Publish(Event)
}

// Enricher turns an event into the CRI message, adding the pod's and its
// containers' statuses. An error means the event cannot be delivered (its
// pod is unknown, and the kubelet cannot place an event without one). It
// runs on the publisher's goroutine, which must hold none of the locks the
// statuses need.
type Enricher func(Event) (*runtime.ContainerEventResponse, error)

var (
	// ErrSlowSubscriber ends a subscription whose buffer overflowed.
	ErrSlowSubscriber = errors.New("event subscriber fell behind and was disconnected; events were lost")
	// ErrEventLost ends every subscription when an event could not be
	// turned into a message: each of them would otherwise miss it.
	ErrEventLost = errors.New("an event could not be delivered; list pods and containers again")
	// ErrClosed ends every subscription when the broker shuts down.
	ErrClosed = errors.New("event stream closed: crishim is shutting down")
)

// DefaultBuffer is how many events a subscriber may lag behind.
const DefaultBuffer = 1024

// Broker delivers every published event to every current subscriber.
type Broker struct {
	enrich Enricher
	buffer int

	// pubMu keeps the time stamp, enrichment and delivery of one event
	// together, so that events reach subscribers in the order they were
	// stamped and their statuses are read after their stamp.
	pubMu sync.Mutex
	// last is the previous event's stamp (guarded by pubMu).
	last int64

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBroker returns a broker; buffer <= 0 selects DefaultBuffer and a nil
// enrich sends bare events.
func NewBroker(buffer int, enrich Enricher) *Broker {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Broker{enrich: enrich, buffer: buffer, subs: map[*Subscription]struct{}{}}
}

// Subscription receives events on C until it is closed or ended by the
// broker; then C is closed and Err says why.
type Subscription struct {
	C <-chan *runtime.ContainerEventResponse

	b   *Broker
	ch  chan *runtime.ContainerEventResponse
	err error // guarded by b.mu
}

// Subscribe registers a new subscriber: every event published after it
// returns reaches it. On a closed broker the subscription is already ended
// with ErrClosed.
func (b *Broker) Subscribe() *Subscription {
	ch := make(chan *runtime.ContainerEventResponse, b.buffer)
	s := &Subscription{C: ch, b: b, ch: ch}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.err = ErrClosed
		close(ch)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Close ends the subscription; it is safe to call more than once.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.dropLocked(s, nil)
}

// Err says why the broker ended the subscription (ErrSlowSubscriber,
// ErrEventLost, ErrClosed); nil while it lasts and after Close.
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

// Close ends every subscription with ErrClosed, and every later one at
// once: a stream that outlives the server's shutdown would hold up its
// graceful stop, and the kubelet learns from the error to relist.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.dropLocked(s, ErrClosed)
	}
}

// Subscribers is the number of live subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish sends ev to every subscriber without ever blocking on one.
//
// The message's CreatedAt is taken here, just before the statuses are read,
// and is strictly increasing across the broker: the kubelet keeps a pod's
// status only if its time is newer than the one it holds, so an event must
// never carry a time older than one sent before it, nor one later than the
// statuses it carries.
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
	at := time.Now().UnixNano()
	if at <= b.last {
		// The wall clock stepped back, or two stamps in one tick.
		at = b.last + 1
	}
	b.last = at
	msg := &runtime.ContainerEventResponse{ContainerId: ev.ID, ContainerEventType: ev.Type, PodSandboxStatus: ev.Sandbox}
	var lost error
	if b.enrich != nil {
		var err error
		if msg, err = b.enrich(ev); err != nil {
			lost = fmt.Errorf("%w: %v of %s in pod %s: %v", ErrEventLost, ev.Type, ev.ID, ev.SandboxID, err)
		}
	}
	if lost == nil {
		msg.CreatedAt = at
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if lost != nil {
			b.dropLocked(s, lost)
			continue
		}
		select {
		case s.ch <- msg:
		default:
			b.dropLocked(s, ErrSlowSubscriber)
		}
	}
}
