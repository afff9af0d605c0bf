package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd"
	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/protobuf"
	ctrdruntime "github.com/containerd/containerd/runtime"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"

	"github.com/crishim/crishim/internal/eventsub"
)

// ErrClosed is Await's answer once the watcher is closed (crishim shutting
// down): the task may well be running still, and nothing is to be
// recorded about it.
var ErrClosed = errors.New("exit watcher closed")

// exitsMarkerTopic carries the event Exits publishes to itself after each
// subscription: seeing it come back proves the subscription is live.
const exitsMarkerTopic = "/crishim/exits/subscribed"

// sweepInterval is how often the processes of waited-on tasks are checked
// for an exit whose event never came. containerd 1.6's shims send events
// through `containerd publish`, which gives an event up after a few failed
// tries: seen when a kubelet removed 100 pods at once, two containers'
// exits were never told and their stops waited for good.
const sweepInterval = 2 * time.Second

// distrustAfter is how long a task may still run after its process looked
// gone before the pidfd is taken to name some other process.
const distrustAfter = 30 * time.Second

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
// be live, which covers every exit the broken stream missed. An event the
// shim itself failed to deliver is covered by the task's process: a pidfd
// of each waited-on task's process, all polled at once every
// sweepInterval without a round trip, tells the waiters of a process that
// is gone to read their task's state until it shows the exit.
type Exits struct {
	client *containerd.Client
	events eventsub.Events // the client's; tests delay it
	ns     string

	start sync.Once
	stop  context.CancelFunc

	mu      sync.Mutex
	closed  bool
	waiters map[string]map[chan struct{}]struct{} // by task ID: each waiter's wake-up
	procs   map[string]*proc                      // by task ID: its process, while waited on
	running sync.WaitGroup                        // the goroutines of Go
}

// proc is a waited-on task's process.
type proc struct {
	fd   int  // pidfd; -1 when none could be had (the events alone tell)
	gone bool // the process has exited
	refs int  // waiters watching it
}

// NewExits makes the exit watcher of containerd namespace ns. It follows
// events from the first Await until Close.
func NewExits(client *containerd.Client, ns string) *Exits {
	return &Exits{client: client, events: client.EventService(), ns: ns,
		waiters: map[string]map[chan struct{}]struct{}{}, procs: map[string]*proc{}}
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
		go x.sweep(fctx)
	})
	w, ok := x.add(id)
	if !ok {
		return containerd.ExitStatus{}, ErrClosed
	}
	watching := false
	defer func() {
		x.remove(id, w)
		if watching {
			x.unwatchProcess(id)
		}
	}()
	backoff := 100 * time.Millisecond
	goneBackoff := 20 * time.Millisecond
	var goneSince time.Time
	failing := false
	for {
		st, exited, pid, err := x.state(ctx, id)
		if err == nil && !exited && !watching && pid > 0 {
			x.watchProcess(id, pid)
			watching = true
		}
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
			if x.processGone(id) {
				if goneSince.IsZero() {
					goneSince = time.Now()
				}
				if time.Since(goneSince) < distrustAfter {
					// The shim records the exit once it has reaped the
					// process: moments from now, seconds on a busy node.
					retry = time.After(goneBackoff)
					goneBackoff = min(2*goneBackoff, 2*time.Second)
				} else {
					// Still running long after: the pidfd named
					// another process (crishim in a PID namespace of
					// its own?). The events alone tell from now on.
					log.Warn("the task runs on though its process looked gone; waiting for its exit event only")
					x.distrustProcess(id)
				}
			}
		}
		select {
		case <-w:
		case <-retry:
		case <-ctx.Done():
			return containerd.ExitStatus{}, ctx.Err()
		}
	}
}

// state reads whether the task has exited, and its status if so; pid is
// its process's.
func (x *Exits) state(ctx context.Context, id string) (_ containerd.ExitStatus, exited bool, pid uint32, _ error) {
	resp, err := x.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return containerd.ExitStatus{}, false, 0, errdefs.FromGRPC(err)
	}
	p := resp.GetProcess()
	if p.GetStatus() != tasktypes.Status_STOPPED {
		return containerd.ExitStatus{}, false, p.GetPid(), nil
	}
	return *containerd.NewExitStatus(p.GetExitStatus(), protobuf.FromTimestamp(p.GetExitedAt()), nil), true, p.GetPid(), nil
}

// watchProcess has the sweep watch task id's process pid. A pidfd names
// that very process, never a later one given the same PID.
func (x *Exits) watchProcess(id string, pid uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := x.procs[id]; p != nil {
		p.refs++
		return
	}
	p := &proc{fd: -1, refs: 1}
	// On failure (the process already gone, or not in crishim's PID
	// namespace; no descriptors left; an old kernel) the events alone tell
	// this task's exit.
	if fd, err := unix.PidfdOpen(int(pid), 0); err == nil {
		p.fd = fd
	}
	x.procs[id] = p
}

// distrustProcess stops watching task id's process.
func (x *Exits) distrustProcess(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := x.procs[id]; p != nil {
		if p.fd >= 0 {
			_ = unix.Close(p.fd)
		}
		p.fd, p.gone = -1, false
	}
}

func (x *Exits) unwatchProcess(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.procs[id]
	if p == nil {
		return
	}
	if p.refs--; p.refs > 0 {
		return
	}
	if p.fd >= 0 {
		_ = unix.Close(p.fd)
	}
	delete(x.procs, id)
}

func (x *Exits) processGone(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.procs[id]
	return p != nil && p.gone
}

// sweep checks the watched processes every sweepInterval until ctx ends.
func (x *Exits) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			x.sweepOnce()
		case <-ctx.Done():
			return
		}
	}
}

// sweepOnce wakes the waiters of every task whose process has exited since
// the last sweep: a pidfd reads ready once its process is gone, and one
// poll without a timeout asks that of all of them.
func (x *Exits) sweepOnce() {
	x.mu.Lock()
	defer x.mu.Unlock()
	fds := make([]unix.PollFd, 0, len(x.procs))
	ids := make([]string, 0, len(x.procs))
	for id, p := range x.procs {
		if p.fd >= 0 && !p.gone {
			fds = append(fds, unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN})
			ids = append(ids, id)
		}
	}
	if len(fds) == 0 {
		return
	}
	if _, err := unix.Poll(fds, 0); err != nil {
		return
	}
	for i, f := range fds {
		if f.Revents&unix.POLLIN == 0 {
			continue
		}
		x.procs[ids[i]].gone = true
		for w := range x.waiters[ids[i]] {
			wake(w)
		}
	}
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
// client is closed. Once a subscription is live, every waiter reads its
// task's state again, for exits that happened while no stream was.
func (x *Exits) follow(ctx context.Context) {
	filters := []string{fmt.Sprintf("namespace==%q,topic==%q", x.ns, ctrdruntime.TaskExitEventTopic)}
	eventsub.Follow(ctx, x.events, x.ns, exitsMarkerTopic, filters, eventsub.Handler{
		Live: x.wakeAll,
		Event: func(env *events.Envelope) {
			var ev eventstypes.TaskExit
			if err := proto.Unmarshal(env.Event.GetValue(), &ev); err == nil && ev.ID == ev.ContainerID { // not an exec process
				x.wakeTask(ev.ContainerID)
			}
		},
	}, func() bool { return x.client.Conn().GetState() == connectivity.Shutdown }, logrus.WithField("component", "exits"))
}
