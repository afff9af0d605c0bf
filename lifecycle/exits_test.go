package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/config"
	ctrdruntime "github.com/containerd/containerd/runtime"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/eventsub"
)

// The Exits tests run busybox tasks on a private containerd (testenv.Shared).
const exitsNamespace = "crishim-lifecycle-test"

var stack testenv.Shared

func TestMain(m *testing.M) { os.Exit(stack.Main(m)) }

type exitsEnv struct {
	client *containerd.Client
	ctx    context.Context
	image  containerd.Image
}

func setupExits(t *testing.T) *exitsEnv {
	stk := stack.Env(t)
	client, err := containerd.New(stk.Containerd.Address, containerd.WithDefaultNamespace(exitsNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := namespaces.WithNamespace(context.Background(), exitsNamespace)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(ctx, config.HostOptions{HostDir: config.HostDirFromRoot(stk.RegistryConfigDir)}),
	})
	img, err := client.Pull(ctx, stk.BusyboxImage, containerd.WithResolver(resolver), containerd.WithPullUnpack,
		containerd.WithPullSnapshotter("overlayfs"))
	if err != nil {
		t.Fatalf("pull %s: %v", stk.BusyboxImage, err)
	}
	return &exitsEnv{client: client, ctx: ctx, image: img}
}

// task creates and starts a busybox task running args; the test's end
// removes it.
func (e *exitsEnv) task(t *testing.T, args ...string) containerd.Task {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := "exits-" + hex.EncodeToString(b)
	c, err := e.client.NewContainer(e.ctx, id, containerd.WithSnapshotter("overlayfs"),
		containerd.WithNewSnapshot(id, e.image),
		containerd.WithNewSpec(oci.WithImageConfig(e.image), oci.WithProcessArgs(args...)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
		defer cancel()
		if task, err := c.Task(ctx, nil); err == nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
	})
	task, err := c.NewTask(e.ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	return task
}

type awaited struct {
	st  containerd.ExitStatus
	err error
}

// await runs x.Await in the background and returns once it is waiting.
func await(t *testing.T, x *Exits, ctx context.Context, id string) <-chan awaited {
	t.Helper()
	ch := make(chan awaited, 1)
	go func() {
		st, err := x.Await(ctx, id, logrus.WithField("test", t.Name()))
		ch <- awaited{st, err}
	}()
	waitRegistered(t, x, id)
	return ch
}

// waitRegistered returns once some Await waits on task id.
func waitRegistered(t *testing.T, x *Exits, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		x.mu.Lock()
		n := len(x.waiters[id])
		x.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Await did not register a waiter within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan awaited, what string) awaited {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("Await did not return within 30s after %s", what)
		return awaited{}
	}
}

// TestExitsAwaitRunningTask: a waiter on a running task learns its exit
// status from the exit event, and then no waiter is left registered.
func TestExitsAwaitRunningTask(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	defer x.Close()
	task := e.task(t, "sleep", "1000")
	ch := await(t, x, e.ctx, task.ID())
	select {
	case r := <-ch:
		t.Fatalf("Await returned %+v while the task runs", r)
	default:
	}
	if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ch, "SIGKILL")
	if r.err != nil || r.st.ExitCode() != 137 || r.st.ExitTime().IsZero() {
		t.Fatalf("Await = code %d at %v, %v; want 137 with a time", r.st.ExitCode(), r.st.ExitTime(), r.err)
	}
	x.mu.Lock()
	left := len(x.waiters)
	x.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d tasks still have waiters after the exit", left)
	}
}

// TestExitsAwaitExitedTask: a task that exited before anyone waited
// reports its status at once; so does every further waiter.
func TestExitsAwaitExitedTask(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	defer x.Close()
	task := e.task(t, "sh", "-c", "exit 3")
	exited, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("task did not exit")
	}
	for i := 0; i < 2; i++ {
		st, err := x.Await(e.ctx, task.ID(), logrus.WithField("test", t.Name()))
		if err != nil || st.ExitCode() != 3 {
			t.Fatalf("Await %d = code %d, %v; want 3", i, st.ExitCode(), err)
		}
	}
}

// TestExitsAwaitGoneTask: a task deleted before or while it is waited on
// has no exit to report: NotFound, not a wait forever.
func TestExitsAwaitGoneTask(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	defer x.Close()
	if _, err := x.Await(e.ctx, "exits-never-created", logrus.WithField("test", t.Name())); !errdefs.IsNotFound(err) {
		t.Fatalf("Await of a task that never existed = %v, want NotFound", err)
	}
	task := e.task(t, "sh", "-c", "exit 0")
	exited, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, err := task.Delete(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Await(e.ctx, task.ID(), logrus.WithField("test", t.Name())); !errdefs.IsNotFound(err) {
		t.Fatalf("Await of a deleted task = %v, want NotFound", err)
	}
}

// TestExitsCloseEndsWaits: closing the watcher releases its waiters, and
// a wait begun after it returns at once.
func TestExitsCloseEndsWaits(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	task := e.task(t, "sleep", "1000")
	ch := await(t, x, e.ctx, task.ID())
	x.Close()
	if r := receive(t, ch, "Close"); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Await after Close = %+v, want ErrClosed", r)
	}
	if _, err := x.Await(e.ctx, task.ID(), logrus.WithField("test", t.Name())); !errors.Is(err, ErrClosed) {
		t.Fatalf("Await on a closed watcher = %v, want ErrClosed", err)
	}
}

// TestExitsCloseWaitsForWatchers: Close returns only after every goroutine
// started by Go has, so none acts on the watcher's end once crishim moves
// on; Go after Close starts nothing.
func TestExitsCloseWaitsForWatchers(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	task := e.task(t, "sleep", "1000")
	var got error
	returned := make(chan struct{})
	if !x.Go(func() {
		_, got = x.Await(e.ctx, task.ID(), logrus.WithField("test", t.Name()))
		close(returned)
	}) {
		t.Fatal("Go on an open watcher started nothing")
	}
	waitRegistered(t, x, task.ID())
	x.Close()
	select {
	case <-returned:
	default:
		t.Fatal("Close returned before the watcher did")
	}
	if !errors.Is(got, ErrClosed) {
		t.Fatalf("the watcher's Await = %v, want ErrClosed", got)
	}
	if x.Go(func() { t.Error("a watcher ran after Close") }) {
		t.Fatal("Go after Close started a watcher")
	}
}

// TestExitsCtxEndsWait: a waiter whose context ends returns without an exit.
func TestExitsCtxEndsWait(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	defer x.Close()
	task := e.task(t, "sleep", "1000")
	ctx, cancel := context.WithCancel(e.ctx)
	ch := await(t, x, ctx, task.ID())
	cancel()
	if r := receive(t, ch, "cancel"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Await after its ctx ended = %+v, want context.Canceled", r)
	}
}

// TestExitsMissedWhileUnsubscribed: an exit that happened while no event
// stream was live (containerd restarting) reaches its waiter once a new
// subscription is: the subscription's marker makes every waiter read its
// task's state again.
func TestExitsMissedWhileUnsubscribed(t *testing.T) {
	e := setupExits(t)
	missedThenSubscribe(t, e, NewExits(e.client, exitsNamespace))
}

// TestExitsMarkerBeforeSubscription: a marker published before containerd
// has registered the subscription reaches no one; the marker is published
// again until one comes back, so the missed exit is still found. (With a
// single marker this test hangs: the held-back subscription sees none.)
func TestExitsMarkerBeforeSubscription(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	late := &lateSubscription{Events: x.events, published: make(chan struct{})}
	x.events = late
	missedThenSubscribe(t, e, x)
	if n := late.publishes.Load(); n < 2 {
		t.Fatalf("the marker was published %d times; the first cannot have come back", n)
	}
}

// missedThenSubscribe kills a waited-on task while x follows no events,
// then starts following and wants the waiter to get the exit.
func missedThenSubscribe(t *testing.T, e *exitsEnv, x *Exits) {
	t.Helper()
	x.start.Do(func() {}) // no stream until the test starts one
	defer x.Close()
	task := e.task(t, "sleep", "1000")
	exited, err := task.Wait(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := await(t, x, e.ctx, task.ID())
	if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("task did not exit")
	}
	select {
	case r := <-ch:
		t.Fatalf("Await returned %+v with no stream to tell it", r)
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go x.follow(ctx)
	r := receive(t, ch, "the subscription")
	if r.err != nil || r.st.ExitCode() != 137 {
		t.Fatalf("Await = code %d, %v; want 137", r.st.ExitCode(), r.err)
	}
}

// lateSubscription opens each subscription only after the first marker
// has been published: the order a slow stream setup gives.
type lateSubscription struct {
	eventsub.Events
	published chan struct{}
	once      sync.Once
	publishes atomic.Int32
}

func (l *lateSubscription) Publish(ctx context.Context, topic string, ev events.Event) error {
	err := l.Events.Publish(ctx, topic, ev)
	l.publishes.Add(1)
	l.once.Do(func() { close(l.published) })
	return err
}

func (l *lateSubscription) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	out := make(chan *events.Envelope)
	errs := make(chan error, 1)
	go func() {
		select {
		case <-l.published:
		case <-ctx.Done():
			errs <- ctx.Err()
			return
		}
		evc, errc := l.Events.Subscribe(ctx, filters...)
		for {
			select {
			case env := <-evc:
				select {
				case out <- env:
				case <-ctx.Done():
					return
				}
			case err := <-errc:
				errs <- err
				return
			}
		}
	}()
	return out, errs
}

// TestExitsLostEventSeenByTheSweep: an exit whose event never comes (a
// shim that gave up publishing it) still reaches its waiter: the sweep
// finds the task's process gone. (Without the sweep this test hangs.)
func TestExitsLostEventSeenByTheSweep(t *testing.T) {
	e := setupExits(t)
	x := NewExits(e.client, exitsNamespace)
	x.events = &withoutExits{Events: x.events}
	defer x.Close()
	task := e.task(t, "sleep", "1000")
	ch := await(t, x, e.ctx, task.ID())
	if err := task.Kill(e.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ch, "SIGKILL with its exit event lost")
	if r.err != nil || r.st.ExitCode() != 137 {
		t.Fatalf("Await = code %d, %v; want 137", r.st.ExitCode(), r.err)
	}
	x.mu.Lock()
	left := len(x.procs)
	x.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d processes still watched after the only waiter returned", left)
	}
}

// withoutExits delivers every event but the task exits.
type withoutExits struct{ eventsub.Events }

func (w *withoutExits) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	in, errs := w.Events.Subscribe(ctx, filters...)
	out := make(chan *events.Envelope)
	go func() {
		for {
			var env *events.Envelope
			select {
			case env = <-in:
			case <-ctx.Done():
				return
			}
			if env == nil || env.Topic == ctrdruntime.TaskExitEventTopic {
				continue
			}
			select {
			case out <- env:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errs
}
