package container

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	ctrdruntime "github.com/containerd/containerd/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	crishimpb "github.com/crishim/crishim/proto"
)

func oomTestManager(t *testing.T, driver string, ids ...string) (*Manager, map[string]*entry) {
	t.Helper()
	m := &Manager{containers: map[string]*entry{}, cfg: Config{CgroupDriver: driver}, cgroupRoot: t.TempDir()}
	for _, id := range ids {
		m.containers[id] = &entry{id: id, rec: &crishimpb.ContainerRecord{Id: id, SandboxId: "pod"},
			exited: make(chan struct{}), exitEvent: make(chan struct{}),
			spec: &specs.Spec{Linux: &specs.Linux{CgroupsPath: "kubepods-burstable-pod1.slice:crishim:" + id}}}
	}
	m.following.Store(true) // as if subscribed: the tests deliver the events
	return m, m.containers
}

func deliver(t *testing.T, m *Manager, topic string, ev proto.Message) {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	m.handleTaskEvent(topic, b)
}

// An OOM event makes a failed exit OOMKilled, for that container only; a
// clean exit stays Completed, and neither an exec's exit event nor
// another container's OOM counts.
func TestTaskOOMEventSetsReason(t *testing.T) {
	m, es := oomTestManager(t, "systemd", "a", "b")
	deliver(t, m, ctrdruntime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: "a"})
	deliver(t, m, ctrdruntime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: "a"}) // v2 shims repeat it
	deliver(t, m, ctrdruntime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: "some-pod"})
	deliver(t, m, ctrdruntime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "b", ID: "exec-1", ExitStatus: 1})
	select {
	case <-es["b"].exitEvent:
		t.Fatal("an exec's exit event was taken for the container's")
	default:
	}
	deliver(t, m, ctrdruntime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "a", ID: "a", ExitStatus: 137})
	deliver(t, m, ctrdruntime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "b", ID: "b", ExitStatus: 137})
	deliver(t, m, ctrdruntime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "b", ID: "b", ExitStatus: 137}) // a replay must not panic

	if got := m.exitReasonOf(es["a"], 137); got != ReasonOOMKilled {
		t.Errorf("a after its OOM event: %s, want %s", got, ReasonOOMKilled)
	}
	if got := m.exitReasonOf(es["a"], 0); got != ReasonCompleted {
		t.Errorf("a exiting 0 after an OOM kill of one of its processes: %s, want %s", got, ReasonCompleted)
	}
	if got := m.exitReasonOf(es["b"], 137); got != ReasonError {
		t.Errorf("b, which had no OOM: %s, want %s", got, ReasonError)
	}
	// Garbage must not take the follower down.
	m.handleTaskEvent(ctrdruntime.TaskOOMEventTopic, []byte{0xff, 0xff})
}

// crishim can learn of the exit (through lifecycle.Exits) before the OOM event: the
// reason waits for the exit event, which the shim sends after the OOM one.
func TestOOMEventAfterExitIsSeen(t *testing.T) {
	m, es := oomTestManager(t, "systemd", "a")
	got := make(chan string)
	go func() { got <- m.exitReasonOf(es["a"], 137) }()
	deliver(t, m, ctrdruntime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: "a"})
	deliver(t, m, ctrdruntime.TaskExitEventTopic, &eventstypes.TaskExit{ContainerID: "a", ID: "a", ExitStatus: 137})
	if r := <-got; r != ReasonOOMKilled {
		t.Errorf("reason %s, want %s", r, ReasonOOMKilled)
	}
}

// With no event stream (containerd restarting), a failed exit waits for no
// exit event: nothing would deliver it.
func TestNoExitEventWaitWithoutStream(t *testing.T) {
	m, es := oomTestManager(t, "systemd", "a")
	m.following.Store(false)
	done := make(chan string, 1)
	go func() { done <- m.exitReasonOf(es["a"], 1) }()
	select {
	case r := <-done:
		if r != ReasonError {
			t.Errorf("reason %s, want %s", r, ReasonError)
		}
	case <-time.After(exitEventWait / 2):
		t.Fatal("a failed exit waited for an exit event no stream can deliver")
	}
}

// Without an event (containerd was restarting), the memory cgroup's OOM
// counter decides; under the systemd driver it is found through the
// slice and scope the driver made of "slice:prefix:name".
func TestOOMCounterUnderSystemdDriver(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		m, es := oomTestManager(t, "systemd", "abc", "def")
		m.cgroupV2 = v2
		scope := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crishim-abc.scope"
		file := filepath.Join(m.cgroupRoot, "memory", scope, "memory.oom_control")
		content := "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
		if v2 {
			file = filepath.Join(m.cgroupRoot, scope, "memory.events")
			content = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		close(es["abc"].exitEvent) // no OOM event came, and none will
		close(es["def"].exitEvent)
		if got := m.exitReasonOf(es["abc"], 137); got != ReasonOOMKilled {
			t.Errorf("cgroup v2=%v: %s with oom_kill 1 in %s, want %s", v2, got, file, ReasonOOMKilled)
		}
		// def's scope does not exist (systemd removed it): no witness.
		if got := m.exitReasonOf(es["def"], 137); got != ReasonError {
			t.Errorf("cgroup v2=%v: container without a cgroup: %s, want %s", v2, got, ReasonError)
		}
	}
}
