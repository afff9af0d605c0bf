// Package eventsub follows containerd events for state crishim keeps in
// memory, and says when a subscription is live: only from then on does
// every event reach the follower, so only then may it trust what it keeps.
//
// containerd's client opens an event stream in the background, and the
// daemon registers it only when its handler runs, with no acknowledgement.
// A follower that read its state right after Subscribe returned could miss
// an event sent in between. So each subscription publishes a marker event
// to itself, and the follower hears Live when one comes back; a marker can
// reach containerd before the subscription does and go to no one, so it
// is published again, ever less often, until one comes back.
package eventsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
)

// Events is what a follower needs of containerd's event service
// (containerd.EventService); tests wrap it.
type Events interface {
	Publish(ctx context.Context, topic string, event events.Event) error
	Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error)
}

// Handler is told what happens to the subscription. Every field may be nil.
type Handler struct {
	// Live: a subscription is registered; every matching event from now
	// on reaches Event. What happened before it (or while no subscription
	// was) may have been missed and must be read again.
	Live func()
	// Event: one event matching the filters (never a marker).
	Event func(*events.Envelope)
	// Lost: the subscription broke; events may be missed until the next
	// Live.
	Lost func(error)
}

// Follow subscribes to the events of namespace ns matching filters until
// ctx ends or done reports true after a subscription broke, subscribing
// again (with a backoff) whenever one does. markerTopic must be the
// follower's own: its markers are published there.
func Follow(ctx context.Context, ev Events, ns, markerTopic string, filters []string, h Handler, done func() bool, log *logrus.Entry) {
	ctx = namespaces.WithNamespace(ctx, ns)
	filters = append(slices.Clip(filters), fmt.Sprintf("namespace==%q,topic==%q", ns, markerTopic))
	backoff := 100 * time.Millisecond
	for {
		err := subscribe(ctx, ev, markerTopic, filters, h, func() { backoff = 100 * time.Millisecond })
		if h.Lost != nil {
			h.Lost(err)
		}
		if ctx.Err() != nil || (done != nil && done()) {
			return
		}
		log.WithError(err).Warn("lost containerd's events; subscribing again")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// subscribe follows one subscription until it breaks.
func subscribe(ctx context.Context, ev Events, markerTopic string, filters []string, h Handler, live func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evc, errc := ev.Subscribe(sctx, filters...)
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	marker := hex.EncodeToString(token)
	republish := time.NewTimer(0)
	defer republish.Stop()
	pending := republish.C // nil once a marker came back
	interval := 20 * time.Millisecond
	for {
		select {
		case <-pending:
			// Any event type carries the token; a task exit is at hand.
			if err := ev.Publish(sctx, markerTopic, &eventstypes.TaskExit{ContainerID: marker}); err != nil {
				return fmt.Errorf("publish the subscription marker: %w", err)
			}
			republish.Reset(interval)
			interval = min(2*interval, 2*time.Second)
		case env := <-evc:
			if env.Topic != markerTopic {
				if h.Event != nil {
					h.Event(env)
				}
				continue
			}
			var m eventstypes.TaskExit
			if err := proto.Unmarshal(env.Event.GetValue(), &m); err != nil || m.ContainerID != marker || pending == nil {
				continue
			}
			pending = nil
			live()
			if h.Live != nil {
				h.Live()
			}
		case err := <-errc:
			return err
		}
	}
}
