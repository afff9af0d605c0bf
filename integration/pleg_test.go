//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The evented PLEG tests read GetContainerEvents as the kubelet does: it
// rebuilds a pod from each event's PodSandboxStatus and ContainersStatuses
// and keeps them only when the event's CreatedAt is newer than what it
// holds for the pod. So every transition must arrive exactly once, in
// order, with statuses that already show it and times that only grow per
// pod; and when the stream cannot keep that promise it must break, since
// only then does the kubelet relist.

const (
	evCreated = runtime.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtime.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtime.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtime.ContainerEventType_CONTAINER_DELETED_EVENT
)

// eventLog records a whole GetContainerEvents stream and how it ended.
type eventLog struct {
	mu   sync.Mutex
	evs  []*runtime.ContainerEventResponse
	end  error // set when the stream ended
	done bool
}

// watchEvents subscribes on a connection of its own and returns once
// crishim has confirmed the subscription (its response headers): every
// transition from then on must reach the log.
func watchEvents(t *testing.T) *eventLog {
	t.Helper()
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := testenv.Dial(crishim.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	rt := runtime.NewRuntimeServiceClient(conn)
	subCtx, subCancel := context.WithTimeout(ctx, 30*time.Second)
	defer subCancel()
	stream, err := rt.GetContainerEvents(ctx, &runtime.GetEventsRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	hdr := make(chan error, 1)
	go func() { _, err := stream.Header(); hdr <- err }()
	select {
	case err := <-hdr:
		if err != nil {
			t.Fatalf("GetContainerEvents: no subscription: %v", err)
		}
	case <-subCtx.Done():
		t.Fatal("GetContainerEvents: crishim did not confirm the subscription (response headers) within 30 s")
	}
	l := &eventLog{}
	go func() {
		for {
			ev, err := stream.Recv()
			l.mu.Lock()
			if err != nil {
				l.end, l.done = err, true
				l.mu.Unlock()
				return
			}
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
	return l
}

// of returns the events about objects in ids, in arrival order.
func (l *eventLog) of(ids ...string) []*runtime.ContainerEventResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*runtime.ContainerEventResponse
	for _, ev := range l.evs {
		if contains(ids, ev.ContainerId) {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor polls until the log holds event typ of id, failing the test if
// the stream ends first.
func (l *eventLog) waitFor(t *testing.T, id string, typ runtime.ContainerEventType, timeout time.Duration) {
	t.Helper()
	err := testenv.Poll(timeout, 20*time.Millisecond, fmt.Sprintf("%v of %s", typ, short(id)), func() (bool, error) {
		for _, ev := range l.of(id) {
			if ev.ContainerEventType == typ {
				return true, nil
			}
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.done {
			return false, fmt.Errorf("stream ended: %v", l.end)
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("events: %v; seen of it: %s", err, describe(l.of(id)))
	}
}

// ended waits for the stream to end and returns its error.
func (l *eventLog) ended(t *testing.T, timeout time.Duration) error {
	t.Helper()
	var end error
	err := testenv.Poll(timeout, 20*time.Millisecond, "event stream to end", func() (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		end = l.end
		return l.done, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return end
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func describe(evs []*runtime.ContainerEventResponse) string {
	var parts []string
	for _, ev := range evs {
		parts = append(parts, fmt.Sprintf("%s %s", short(ev.ContainerId), strings.TrimSuffix(strings.TrimPrefix(ev.ContainerEventType.String(), "CONTAINER_"), "_EVENT")))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// exitWant is what a STOPPED event must show of a container.
type exitWant struct {
	code   int32
	reason string
}

// object is one pod or container and the transitions it must go through.
type object struct {
	id, name string
	pod      bool
	want     []runtime.ContainerEventType
	exit     exitWant
}

// checkPodEvents checks the events of one pod and its containers in a log:
// each object's transitions exactly once and in order; the pod's status in
// every event (ID, metadata, state); the object's own status in it (state,
// exit code and reason; a deleted container absent); CreatedAt strictly
// increasing over the pod's events and no earlier than the times the
// statuses report.
func checkPodEvents(t *testing.T, l *eventLog, podID string, uid string, objs []object) {
	t.Helper()
	ids := make([]string, 0, len(objs))
	for _, o := range objs {
		ids = append(ids, o.id)
	}
	evs := l.of(ids...)
	var last int64
	for i, ev := range evs {
		what := fmt.Sprintf("event %d (%s %v)", i, short(ev.ContainerId), ev.ContainerEventType)
		ps := ev.PodSandboxStatus
		if ps.GetId() != podID || ps.GetMetadata().GetUid() != uid {
			t.Errorf("%s: pod status of %q (uid %q), want pod %s (uid %s)", what, short(ps.GetId()), ps.GetMetadata().GetUid(), short(podID), uid)
		}
		if ev.CreatedAt <= last {
			t.Errorf("%s: created at %d, not after the pod's previous event at %d", what, ev.CreatedAt, last)
		}
		last = ev.CreatedAt
		for _, cs := range ev.ContainersStatuses {
			if !contains(ids, cs.Id) {
				t.Errorf("%s: status of container %s, not of this pod", what, short(cs.Id))
			}
		}
	}
	for _, o := range objs {
		var got []runtime.ContainerEventType
		for _, ev := range evs {
			if ev.ContainerId != o.id {
				continue
			}
			got = append(got, ev.ContainerEventType)
			checkPayload(t, o, ev)
		}
		if fmt.Sprint(got) != fmt.Sprint(o.want) {
			t.Errorf("%s %s: events %v, want %v exactly once each, in this order", o.name, short(o.id), got, o.want)
		}
	}
}

func checkPayload(t *testing.T, o object, ev *runtime.ContainerEventResponse) {
	t.Helper()
	what := fmt.Sprintf("%s %v", o.name, ev.ContainerEventType)
	if o.pod {
		want := runtime.PodSandboxState_SANDBOX_READY
		if ev.ContainerEventType == evStopped || ev.ContainerEventType == evDeleted {
			want = runtime.PodSandboxState_SANDBOX_NOTREADY
		}
		if got := ev.PodSandboxStatus.GetState(); got != want {
			t.Errorf("%s: pod %v, want %v", what, got, want)
		}
		if ev.ContainerEventType == evDeleted && len(ev.ContainersStatuses) > 0 {
			t.Errorf("%s: %d container statuses in the removed pod's event", what, len(ev.ContainersStatuses))
		}
		return
	}
	var st *runtime.ContainerStatus
	for _, cs := range ev.ContainersStatuses {
		if cs.Id == o.id {
			st = cs
		}
	}
	if ev.ContainerEventType == evDeleted {
		if st != nil {
			t.Errorf("%s: the removed container is still in the event's statuses (%v)", what, st.State)
		}
		return
	}
	if st == nil {
		t.Errorf("%s: the container's status is not in the event", what)
		return
	}
	if st.Metadata.GetName() != o.name {
		t.Errorf("%s: status names %q", what, st.Metadata.GetName())
	}
	switch ev.ContainerEventType {
	case evCreated:
		if st.State != runtime.ContainerState_CONTAINER_CREATED {
			t.Errorf("%s: container %v, want CREATED", what, st.State)
		}
		if ev.CreatedAt < st.CreatedAt {
			t.Errorf("%s: event at %d, before the container's creation at %d", what, ev.CreatedAt, st.CreatedAt)
		}
	case evStarted:
		if st.State != runtime.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 {
			t.Errorf("%s: container %v started at %d, want RUNNING with a start time", what, st.State, st.StartedAt)
		}
		if ev.CreatedAt < st.StartedAt {
			t.Errorf("%s: event at %d, before the start at %d", what, ev.CreatedAt, st.StartedAt)
		}
	case evStopped:
		if st.State != runtime.ContainerState_CONTAINER_EXITED || st.FinishedAt == 0 {
			t.Errorf("%s: container %v finished at %d, want EXITED with a finish time", what, st.State, st.FinishedAt)
		}
		if st.ExitCode != o.exit.code || st.Reason != o.exit.reason {
			t.Errorf("%s: exit %d %q (%s), want %d %q", what, st.ExitCode, st.Reason, st.Message, o.exit.code, o.exit.reason)
		}
		if ev.CreatedAt < st.FinishedAt {
			t.Errorf("%s: event at %d, before the exit at %d", what, ev.CreatedAt, st.FinishedAt)
		}
	}
}

// podLifecycle drives one pod through every transition a CRI client can
// cause or watch, with several containers, from a worker goroutine. It
// returns the pod's objects with the events each must produce.
func podLifecycle(ctx context.Context, c *client, pod *runtime.PodSandboxConfig, hooks string) (string, []object, error) {
	rt := c.rt
	resp, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
	if err != nil {
		return "", nil, fmt.Errorf("RunPodSandbox: %w", err)
	}
	podID := resp.PodSandboxId
	c.mu.Lock()
	c.pods = append(c.pods, podID)
	c.mu.Unlock()
	objs := []object{{id: podID, name: "pod", pod: true, want: []runtime.ContainerEventType{evCreated, evStarted, evStopped, evDeleted}}}

	create := func(cfg *runtime.ContainerConfig) (string, error) {
		r, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		if err != nil {
			return "", fmt.Errorf("CreateContainer %s: %w", cfg.Metadata.Name, err)
		}
		return r.ContainerId, nil
	}
	start := func(id string) error {
		_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
		return err
	}
	remove := func(id string) error {
		_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
		return err
	}
	waitExited := func(id string) error {
		return testenv.Poll(time.Minute, 10*time.Millisecond, "container "+short(id)+" exited", func() (bool, error) {
			r, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
			if err != nil {
				return false, err
			}
			return r.Status.State == runtime.ContainerState_CONTAINER_EXITED, nil
		})
	}
	all := []runtime.ContainerEventType{evCreated, evStarted, evStopped, evDeleted}

	// Exits by itself; removed the moment its status says so, while its
	// exit may still be being recorded.
	quitter, err := create(containerConfig("quitter", env.BusyboxImage, "sh", "-c", "exit 3"))
	if err != nil {
		return podID, objs, err
	}
	objs = append(objs, object{id: quitter, name: "quitter", want: all, exit: exitWant{3, "Error"}})
	if err := start(quitter); err != nil {
		return podID, objs, fmt.Errorf("StartContainer quitter: %w", err)
	}
	if err := waitExited(quitter); err != nil {
		return podID, objs, err
	}
	if err := remove(quitter); err != nil {
		return podID, objs, fmt.Errorf("RemoveContainer quitter: %w", err)
	}

	// Stopped by StopContainer, then removed.
	stopped, err := create(containerConfig("stopped", env.BusyboxImage, idleCmd...))
	if err != nil {
		return podID, objs, err
	}
	objs = append(objs, object{id: stopped, name: "stopped", want: all, exit: exitWant{0, "Completed"}})
	if err := start(stopped); err != nil {
		return podID, objs, fmt.Errorf("StartContainer stopped: %w", err)
	}
	// Its exit 0 is the trap's: a SIGTERM before the shell set it kills
	// the shell (143).
	if err := trapped(ctx, rt, stopped, syscall.SIGTERM); err != nil {
		return podID, objs, err
	}
	if _, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: stopped, Timeout: 10}); err != nil {
		return podID, objs, fmt.Errorf("StopContainer: %w", err)
	}
	if err := remove(stopped); err != nil {
		return podID, objs, fmt.Errorf("RemoveContainer stopped: %w", err)
	}

	// Fails to start: its process cannot be executed. It never ran, so no
	// STARTED, but the kubelet must learn that it is done.
	badStart, err := create(containerConfig("badstart", env.BusyboxImage, "/no/such/program"))
	if err != nil {
		return podID, objs, err
	}
	objs = append(objs, object{id: badStart, name: "badstart", want: []runtime.ContainerEventType{evCreated, evStopped, evDeleted}, exit: exitWant{128, "StartError"}})
	if err := start(badStart); err == nil {
		return podID, objs, errors.New("StartContainer of a container without a program succeeded")
	}
	if err := remove(badStart); err != nil {
		return podID, objs, fmt.Errorf("RemoveContainer badstart: %w", err)
	}

	// Killed because its postStart hook failed (crishim's own hooks, the
	// only ones a CRI client can reach): it ran, so STARTED, then STOPPED.
	post := containerConfig("poststart", env.BusyboxImage, idleCmd...)
	post.Annotations = map[string]string{"crishim.io/post-start": hooks, "crishim.io/termination-grace-period": "5"}
	postID, err := create(post)
	if err != nil {
		return podID, objs, err
	}
	objs = append(objs, object{id: postID, name: "poststart", want: all, exit: exitWant{0, "PostStartHookError"}})
	if err := start(postID); err == nil {
		return podID, objs, errors.New("StartContainer with a failing postStart hook succeeded")
	}
	if err := remove(postID); err != nil {
		return podID, objs, fmt.Errorf("RemoveContainer poststart: %w", err)
	}

	// Left running: StopPodSandbox stops them all at once, so their exits
	// are recorded and published side by side; RemovePodSandbox removes
	// them.
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("left%d", i)
		left, err := create(containerConfig(name, env.BusyboxImage, idleCmd...))
		if err != nil {
			return podID, objs, err
		}
		objs = append(objs, object{id: left, name: name, want: all, exit: exitWant{137, "Error"}})
		if err := start(left); err != nil {
			return podID, objs, fmt.Errorf("StartContainer %s: %w", name, err)
		}
	}
	if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		return podID, objs, fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		return podID, objs, fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return podID, objs, nil
}

// TestEventedPLEGTransitions runs several pods at once through every
// transition and checks each one's events as the kubelet would read them.
func TestEventedPLEGTransitions(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	l := watchEvents(t)
	failingHook, err := json.Marshal(map[string]any{"exec": map[string]any{"command": []string{"sh", "-c", "exit 1"}}})
	if err != nil {
		t.Fatal(err)
	}

	const pods = 4
	cfgs := make([]*runtime.PodSandboxConfig, pods)
	podIDs := make([]string, pods)
	objs := make([][]object, pods)
	for i := range cfgs {
		cfgs[i] = podConfig(t, fmt.Sprintf("pleg%d", i))
	}
	c.removePodsAtEnd(func() []string { return podIDs })
	errs := parallel(pods, pods, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var err error
		podIDs[i], objs[i], err = podLifecycle(ctx, c, cfgs[i], string(failingHook))
		return err
	})
	if msgs := firstErrors(errs, pods); len(msgs) > 0 {
		t.Fatalf("pod lifecycles: %s", strings.Join(msgs, "; "))
	}

	// Every object's last event, then a marker pod's: events are delivered
	// in the order they are published, so a duplicate or a straggler of
	// the pods above would have arrived by the marker's.
	for i := range objs {
		for _, o := range objs[i] {
			l.waitFor(t, o.id, o.want[len(o.want)-1], time.Minute)
		}
	}
	marker := c.runPod(podConfig(t, "pleg-marker"))
	l.waitFor(t, marker, evStarted, time.Minute)

	for i := range objs {
		checkPodEvents(t, l, podIDs[i], cfgs[i].Metadata.Uid, objs[i])
	}
	if t.Failed() {
		for i := range podIDs {
			ids := []string{}
			for _, o := range objs[i] {
				ids = append(ids, o.id)
			}
			t.Logf("pod %d events: %s", i, describe(l.of(ids...)))
		}
	}
}

// TestEventsAcrossRestart: the kubelet's stream breaks when crishim stops
// (SIGTERM: at once, with a status saying so; SIGKILL: the connection
// drops), transitions made while crishim is down show through the statuses
// a relist reads, and a new subscription sees exactly the transitions made
// after it, none from before, none twice.
func TestEventsAcrossRestart(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	c.reconnect()
	crishim, _ := env.Crishim()

	pod := podConfig(t, "pleg-restart")
	signal := filepath.Join(pod.LogDirectory, "signal")
	if err := os.MkdirAll(signal, 0o755); err != nil {
		t.Fatal(err)
	}
	podID := c.runPod(pod)
	before := watchEvents(t)
	a := c.startContainer(podID, pod, containerConfig("a", env.BusyboxImage, idleCmd...))
	b := c.startContainer(podID, pod, containerConfig("b", env.BusyboxImage, idleCmd...))
	wcfg := containerConfig("waiter", env.BusyboxImage, waiterCmd(5)...)
	wcfg.Mounts = []*runtime.Mount{{ContainerPath: "/signal", HostPath: signal}}
	w := c.startContainer(podID, pod, wcfg)
	before.waitFor(t, w, evStarted, time.Minute)

	// SIGTERM: the stream ends with crishim's own status, not a connection
	// torn down after the graceful stop gave up waiting for it.
	stopping := time.Now()
	if err := crishim.Stop(); err != nil {
		t.Fatalf("stop crishim: %v", err)
	}
	t.Logf("crishim exited %s after SIGTERM with an event subscriber", time.Since(stopping).Round(time.Millisecond))
	end := before.ended(t, 10*time.Second)
	if st, _ := status.FromError(end); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
		t.Errorf("event stream at SIGTERM ended with %v, want Unavailable saying crishim is shutting down", end)
	}
	// While crishim is down, the waiter exits 5.
	if err := os.WriteFile(filepath.Join(signal, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := taskExit(t, w, 20*time.Second); code != 5 {
		t.Fatalf("waiter exited %d, want 5", code)
	}
	if err := crishim.Start(); err != nil {
		t.Fatalf("start crishim: %v", err)
	}
	c.reconnect()
	after := watchEvents(t)

	// The relist: the exit made while crishim was down is in the statuses.
	if st := c.containerStatus(w); st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 5 {
		t.Errorf("waiter after the restart: %v code %d, want EXITED 5", st.State, st.ExitCode)
	}
	ctrs, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]runtime.ContainerState{}
	for _, ct := range ctrs.Containers {
		states[ct.Id] = ct.State
	}
	if states[a] != runtime.ContainerState_CONTAINER_RUNNING || states[b] != runtime.ContainerState_CONTAINER_RUNNING || states[w] != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("listed after the restart: a %v, b %v, waiter %v; want RUNNING, RUNNING, EXITED", states[a], states[b], states[w])
	}
	if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after the restart: %v, want READY", st.State)
	}

	// Transitions after the new subscription reach it.
	c.stopContainer(a, 10)
	after.waitFor(t, a, evStopped, time.Minute)
	if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: w}); err != nil {
		t.Fatal(err)
	}
	after.waitFor(t, w, evDeleted, time.Minute)

	// SIGKILL: the client sees the stream break.
	if err := crishim.Kill(); err != nil {
		t.Fatal(err)
	}
	if end := after.ended(t, 10*time.Second); end == nil || errors.Is(end, io.EOF) {
		t.Errorf("event stream at SIGKILL ended with %v, want an error", end)
	}
	if err := crishim.Start(); err != nil {
		t.Fatalf("start crishim after SIGKILL: %v", err)
	}
	c.reconnect()
	last := watchEvents(t)
	cid := c.startContainer(podID, pod, containerConfig("c", env.BusyboxImage, idleCmd...))
	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	last.waitFor(t, podID, evDeleted, time.Minute)
	// A marker pod's events close every stream's record: events arrive in
	// the order they were published.
	marker := c.runPod(podConfig(t, "pleg-restart-marker"))
	last.waitFor(t, marker, evStarted, time.Minute)

	uid := pod.Metadata.Uid
	checkPodEvents(t, before, podID, uid, []object{
		{id: a, name: "a", want: []runtime.ContainerEventType{evCreated, evStarted}},
		{id: b, name: "b", want: []runtime.ContainerEventType{evCreated, evStarted}},
		{id: w, name: "waiter", want: []runtime.ContainerEventType{evCreated, evStarted}},
	})
	checkPodEvents(t, after, podID, uid, []object{
		{id: podID, name: "pod"},
		{id: a, name: "a", want: []runtime.ContainerEventType{evStopped}, exit: exitWant{0, "Completed"}},
		{id: b, name: "b"},
		{id: w, name: "waiter", want: []runtime.ContainerEventType{evDeleted}},
	})
	checkPodEvents(t, last, podID, uid, []object{
		{id: podID, name: "pod", pod: true, want: []runtime.ContainerEventType{evStopped, evDeleted}},
		{id: a, name: "a", want: []runtime.ContainerEventType{evDeleted}},
		{id: b, name: "b", want: []runtime.ContainerEventType{evStopped, evDeleted}, exit: exitWant{137, "Error"}},
		{id: cid, name: "c", want: []runtime.ContainerEventType{evCreated, evStarted, evStopped, evDeleted}, exit: exitWant{137, "Error"}},
	})
	if t.Failed() {
		ids := []string{podID, a, b, w, cid}
		t.Logf("before the restarts: %s\nbetween: %s\nafter: %s", describe(before.of(ids...)), describe(after.of(ids...)), describe(last.of(ids...)))
	}
	c.assertPodGone(podID, []string{a, b, w, cid})
}
