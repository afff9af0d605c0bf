package eventsub

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/crishim/crishim/integration/testenv"
)

// The tests follow events of a real containerd (testenv.Shared). The late
// subscription (a marker that reaches containerd before the stream) is
// tested through its user, lifecycle.Exits (TestExitsMarkerBeforeSubscription).
const (
	testNamespace = "crishim-eventsub-test"
	pingTopic     = "/crishim-test/ping"
	markerTopic   = "/crishim-test/subscribed"
)

var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

type follower struct {
	live   chan struct{}
	events chan string
	lost   atomic.Int32
}

func (f *follower) handler() Handler {
	return Handler{
		Live: func() { f.live <- struct{}{} },
		Event: func(env *events.Envelope) {
			var ev eventstypes.TaskExit
			if err := proto.Unmarshal(env.Event.GetValue(), &ev); err == nil {
				f.events <- env.Topic + " " + ev.ContainerID
			}
		},
		Lost: func(error) { f.lost.Add(1) },
	}
}

func setup(t *testing.T, wrap func(Events) Events) (*containerd.Client, *follower, context.Context) {
	stk := stack.Env(t)
	client, err := containerd.New(stk.Containerd.Address, containerd.WithDefaultNamespace(testNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), testNamespace))
	f := &follower{live: make(chan struct{}, 4), events: make(chan string, 16)}
	var ev Events = client.EventService()
	if wrap != nil {
		ev = wrap(ev)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, ev, testNamespace, markerTopic, []string{`topic=="` + pingTopic + `"`}, f.handler(), nil, logrus.WithField("test", t.Name()))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return client, f, ctx
}

func (f *follower) waitLive(t *testing.T) {
	t.Helper()
	select {
	case <-f.live:
	case <-time.After(30 * time.Second):
		t.Fatal("no subscription became live in 30 s")
	}
}

func (f *follower) want(t *testing.T, event string) {
	t.Helper()
	select {
	case got := <-f.events:
		if got != event {
			t.Fatalf("event %q, want %q (markers never reach Event)", got, event)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("event %q not delivered in 30 s", event)
	}
}

func TestEventsAfterLive(t *testing.T) {
	client, f, ctx := setup(t, nil)
	f.waitLive(t)
	for _, id := range []string{"one", "two"} {
		if err := client.EventService().Publish(ctx, pingTopic, &eventstypes.TaskExit{ContainerID: id}); err != nil {
			t.Fatal(err)
		}
		f.want(t, pingTopic+" "+id)
	}
}

// brokenFirst fails the first subscription at once, as a containerd
// restart breaks a stream.
type brokenFirst struct {
	Events
	calls atomic.Int32
}

func (b *brokenFirst) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	if b.calls.Add(1) == 1 {
		errs := make(chan error, 1)
		errs <- errors.New("stream broken by the test")
		return make(chan *events.Envelope), errs
	}
	return b.Events.Subscribe(ctx, filters...)
}

func TestSubscribesAgainAfterABrokenStream(t *testing.T) {
	var b *brokenFirst
	client, f, ctx := setup(t, func(ev Events) Events { b = &brokenFirst{Events: ev}; return b })
	f.waitLive(t)
	if got := b.calls.Load(); got != 2 {
		t.Errorf("%d subscriptions, want 2 (the broken one and the live one)", got)
	}
	if got := f.lost.Load(); got != 1 {
		t.Errorf("Lost told %d times, want 1", got)
	}
	if err := client.EventService().Publish(ctx, pingTopic, &eventstypes.TaskExit{ContainerID: "after"}); err != nil {
		t.Fatal(err)
	}
	f.want(t, pingTopic+" after")
}
