package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf"
	ctrdruntime "github.com/containerd/containerd/runtime"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"
)

// ErrClosed is Await's answer once the watcher is closed (crishim shutting
// down): the task may well be running still, and nothing is to be
// recorded about it.
var ErrClosed = errors.New("exit watcher closed")

// exitsMarkerTopic carries the event Exits publishes to itself after each
// subscription: seeing it come back proves the subscription is live.
const exitsMarkerTopic = "/crishim/exits/subscribed"

// Exits tells waiters when their tasks exit, from containerd's task exit
// events. A node runs one task per pod and per container for months; a
// blocking Tasks/Wait for each would hold a stream in crishim, a goroutine
// and a stream in containerd and a request in every shim for as long. One
// event subscription serves all of them instead.
//
// An event only says "look now": the exit status always comes from the
// task's state (Tasks/Get), so an event lost while containerd restarted, or
// one that came before the waiter, cannot be the difference. Each waiter
// reads its task's state once when it starts waiting, again on its task's
// exit event, and every waiter again once a new subscription is known to
// be live, which covers every exit the broken stream missed.
type Exits struct {
	client *containerd.Client
	events containerd.EventService // the client's; tests delay it
	ns     string

	start sync.Once
	stop  context.CancelFunc

	mu      sync.Mutex
	closed  bool
	waiters map[string]map[chan struct{}]struct{} // by task ID: each waiter's wake-up
	running sync.WaitGroup                        // the goroutines of Go
}

// NewExits makes the exit watcher of containerd namespace ns. It follows
// events from the first Await until Close.
func NewExits(client *containerd.Client, ns string) *Exits {
	return &Exits{client: client, events: client.EventService(), ns: ns, waiters: map[string]map[chan struct{}]struct{}{}}
}

// Go runs watch, a goroutine that waits on Await, unless the watcher is
// closed. Close waits for these goroutines: once it returns, none of them
// acts on what it saw, such as a container to mark exited.
func (x *Exits) Go(watch func()) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return false
	}
	x.running.Add(1)
	go func() {
		defer x.running.Done()
		watch()
	}()
	return true
}

// Close stops following events and releases every waiter with ErrClosed,
// unless its task has exited by then; any Await after it returns ErrClosed.
// It returns when every goroutine started by Go has.
func (x *Exits) Close() {
	x.start.Do(func() {})
	x.mu.Lock()
	x.closed = true // from here on, add registers no new waiter
	x.mu.Unlock()
	x.wakeAll()
	if x.stop != nil {
		x.stop()
	}
	x.running.Wait()
}

// Await blocks until the task of container id exits and returns its exit
// status. Its error matches errdefs.ErrNotFound when the task is gone
// (deleted, or lost by containerd after its shim died) without an exit to
// report; it is ctx's error or ErrClosed when Await stopped waiting first,
// which says nothing about the task. containerd being away is not an exit:
// the state is read again once it is back. ctx must name the namespace.
func (x *Exits) Await(ctx context.Context, id string, log *logrus.Entry) (containerd.ExitStatus, error) {
	x.start.Do(func() {
		fctx, cancel := context.WithCancel(context.Background())
		x.stop = cancel
		go x.follow(fctx)
	})
	w, ok := x.add(id)
	if !ok {
		return containerd.ExitStatus{}, ErrClosed
	}
	defer x.remove(id, w)
	backoff := 100 * time.Millisecond
	failing := false
	for {
		st, exited, err := x.state(ctx, id)
		switch {
		case err == nil && exited:
			return st, nil
		case errdefs.IsNotFound(err):
			return containerd.ExitStatus{}, fmt.Errorf("task of %s: %w", id, err)
		case ctx.Err() != nil:
			return containerd.ExitStatus{}, ctx.Err()
		case x.isClosed():
			return containerd.ExitStatus{}, ErrClosed
		}
		var retry <-chan time.Time
		if err != nil {
			// Most often containerd restarting; the new subscription wakes
			// every waiter, and the timer covers errors of a live one.
			if !failing {
				log.WithError(err).Warn("cannot read the task's state; reading it again")
				failing = true
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff, failing = 100*time.Millisecond, false
		}
		select {
		case <-w:
		case <-retry:
		case <-ctx.Done():
			return containerd.ExitStatus{}, ctx.Err()
		}
	}
}

// state reads whether the task has exited, and its status if so.
func (x *Exits) state(ctx context.Context, id string) (containerd.ExitStatus, bool, error) {
	resp, err := x.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return containerd.ExitStatus{}, false, errdefs.FromGRPC(err)
	}
	p := resp.GetProcess()
	if p.GetStatus() != tasktypes.Status_STOPPED {
		return containerd.ExitStatus{}, false, nil
	}
	return *containerd.NewExitStatus(p.GetExitStatus(), protobuf.FromTimestamp(p.GetExitedAt()), nil), true, nil
}

func (x *Exits) add(id string) (chan struct{}, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil, false
	}
	w := make(chan struct{}, 1)
	if x.waiters[id] == nil {
		x.waiters[id] = map[chan struct{}]struct{}{}
	}
	x.waiters[id][w] = struct{}{}
	return w, true
}

func (x *Exits) remove(id string, w chan struct{}) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.waiters[id], w)
	if len(x.waiters[id]) == 0 {
		delete(x.waiters, id)
	}
}

func (x *Exits) isClosed() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.closed
}

// wakeTask wakes the waiters of one task; wakeAll every waiter.
func (x *Exits) wakeTask(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for w := range x.waiters[id] {
		wake(w)
	}
}

func (x *Exits) wakeAll() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, ws := range x.waiters {
		for w := range ws {
			wake(w)
		}
	}
}

// wake never blocks: a wake-up already pending covers this one too.
func wake(w chan struct{}) {
	select {
	case w <- struct{}{}:
	default:
	}
}

// follow subscribes to the namespace's exit events until ctx ends or the
// client is closed, subscribing again whenever the stream breaks.
func (x *Exits) follow(ctx context.Context) {
	ctx = namespaces.WithNamespace(ctx, x.ns)
	filters := []string{
		fmt.Sprintf("namespace==%q,topic==%q", x.ns, ctrdruntime.TaskExitEventTopic),
		fmt.Sprintf("namespace==%q,topic==%q", x.ns, exitsMarkerTopic),
	}
	log := logrus.WithField("component", "exits")
	backoff := 100 * time.Millisecond
	for {
		err := x.subscribe(ctx, filters, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil || x.client.Conn().GetState() == connectivity.Shutdown {
			return
		}
		log.WithError(err).Warn("lost containerd's task exit events; subscribing again")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// subscribe follows one subscription until it breaks. Once its own marker
// comes back through it, the stream is live: every waiter reads its task's
// state again then, for exits that happened while no stream was.
//
// The client opens the stream in the background and containerd registers
// it only when its handler runs, with no acknowledgement: a marker can
// reach containerd before the subscription does and go to no one. So the
// marker is published again, ever less often, until one comes back.
func (x *Exits) subscribe(ctx context.Context, filters []string, live func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evc, errc := x.events.Subscribe(sctx, filters...)
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
			if err := x.events.Publish(sctx, exitsMarkerTopic, &eventstypes.TaskExit{ContainerID: marker}); err != nil {
				return fmt.Errorf("publish the subscription marker: %w", err)
			}
			republish.Reset(interval)
			interval = min(2*interval, 2*time.Second)
		case env := <-evc:
			var ev eventstypes.TaskExit
			if err := proto.Unmarshal(env.Event.GetValue(), &ev); err != nil {
				continue
			}
			switch {
			case env.Topic == exitsMarkerTopic:
				if ev.ContainerID == marker && pending != nil {
					pending = nil
					live()
					x.wakeAll()
				}
			case ev.ID == ev.ContainerID: // not an exec process
				x.wakeTask(ev.ContainerID)
			}
		case err := <-errc:
			return err
		}
	}
}
