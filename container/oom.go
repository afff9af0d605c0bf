package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	ctrdruntime "github.com/containerd/containerd/runtime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"

	"github.com/crishim/crishim/internal/cgroup"
	"github.com/crishim/crishim/internal/faultpoint"
)

// exitEventWait bounds how long a failed container's exit waits for
// containerd's exit event before its reason is settled. The shim sends a
// container's OOM event before its exit event, on one ordered stream, so
// once the exit event has arrived any OOM event has too; crishim learns of
// the exit itself through lifecycle.Exits, a subscription of its own that
// may deliver first. The event comes within milliseconds; on a loaded node
// the stream has lagged a second.
const exitEventWait = 5 * time.Second

// startTaskEvents follows containerd's task OOM and exit events for the
// manager's lifetime (until Close). The OOM events are how crishim knows
// an exit was an OOM kill under any cgroup driver and version: the shim
// finds the container's memory cgroup from its PID, where crishim would
// have to know the driver's naming.
func (m *Manager) startTaskEvents() {
	m.eventsOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		m.stopEvents = cancel
		go m.followTaskEvents(ctx)
	})
}

// Close stops following containerd's events.
func (m *Manager) Close() {
	m.eventsOnce.Do(func() {}) // no follower starts after Close
	if m.stopEvents != nil {
		m.stopEvents()
	}
	if m.exits != nil {
		m.exits.Close()
	}
}

func (m *Manager) followTaskEvents(ctx context.Context) {
	ns := m.client.DefaultNamespace()
	filters := []string{
		fmt.Sprintf("namespace==%q,topic==%q", ns, ctrdruntime.TaskOOMEventTopic),
		fmt.Sprintf("namespace==%q,topic==%q", ns, ctrdruntime.TaskExitEventTopic),
	}
	backoff := 100 * time.Millisecond
	for {
		sctx, cancel := context.WithCancel(ctx)
		evc, errc := m.client.Subscribe(sctx, filters...)
		m.following.Store(true)
		err := func() error {
			for {
				select {
				case env := <-evc:
					backoff = 100 * time.Millisecond
					m.handleTaskEvent(env.Topic, env.Event.GetValue())
				case err := <-errc:
					return err
				}
			}
		}()
		m.following.Store(false)
		cancel()
		if ctx.Err() != nil {
			return
		}
		// containerd restarted, or the stream broke: until it is back,
		// failed exits fall back to the cgroup's own OOM counter.
		m.log().WithError(err).Warn("lost containerd's task events; subscribing again")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// handleTaskEvent records an OOM kill in a container, or that its init
// process's exit event arrived. Events of pods and of other clients'
// containers find no entry and are ignored.
func (m *Manager) handleTaskEvent(topic string, payload []byte) {
	switch topic {
	case ctrdruntime.TaskOOMEventTopic:
		var ev eventstypes.TaskOOM
		if err := proto.Unmarshal(payload, &ev); err != nil {
			m.log().WithError(err).Warn("decode task OOM event")
			return
		}
		e := m.lookup(ev.ContainerID)
		if e == nil {
			return
		}
		e.mu.Lock()
		first := !e.oomKilled
		e.oomKilled = true
		e.mu.Unlock()
		if first {
			m.log().WithFields(logrus.Fields{"pod": e.rec.SandboxId, "container": e.id}).Info("OOM kill in container")
		}
	case ctrdruntime.TaskExitEventTopic:
		var ev eventstypes.TaskExit
		if err := proto.Unmarshal(payload, &ev); err != nil {
			m.log().WithError(err).Warn("decode task exit event")
			return
		}
		if ev.ID != ev.ContainerID {
			return // an exec process
		}
		if e := m.lookup(ev.ContainerID); e != nil {
			e.exitEventOnce.Do(func() { close(e.exitEvent) })
		}
	}
}

// lookup finds a container by its full ID, nil when crishim has none.
func (m *Manager) lookup(id string) *entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.containers[id]
}

func (e *entry) sawOOM() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.oomKilled
}

// exitReasonOf settles why a container's init process exited with code:
// OOMKilled when it failed and the kernel OOM-killed a process of its
// memory cgroup while it ran. Called before the task (and its cgroup) is
// deleted.
func (m *Manager) exitReasonOf(e *entry, code uint32) string {
	if code == 0 {
		return ReasonCompleted
	}
	if e.sawOOM() || m.oomKilled(e.currentSpec()) {
		return ReasonOOMKilled
	}
	if !m.following.Load() {
		return ReasonError // no exit event is coming
	}
	select {
	case <-e.exitEvent:
	case <-time.After(exitEventWait):
	}
	if e.sawOOM() {
		return ReasonOOMKilled
	}
	return ReasonError
}

// oomKilled reads the OOM kill counter of the container's memory cgroup,
// located through the cgroup driver. It covers exits whose OOM event was
// lost (containerd restarting); under the systemd driver the scope's
// cgroup may already be gone, and then the event is the only witness.
func (m *Manager) oomKilled(spec *specs.Spec) bool {
	if spec == nil || spec.Linux == nil {
		return false
	}
	// Lets a test take this witness away, as a gone systemd scope would.
	if faultpoint.Hit("container.readOOMCounter") != nil {
		return false
	}
	dir, err := cgroup.Path(spec.Linux.CgroupsPath, m.cfg.CgroupDriver)
	if err != nil {
		return false
	}
	file := filepath.Join(m.cgroupRoot, "memory", dir, "memory.oom_control")
	if m.cgroupV2 {
		file = filepath.Join(m.cgroupRoot, dir, "memory.events")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n > 0
		}
	}
	return false
}
