//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/lifecycle"
)

// Lifecycle tests watch containers through a host directory mounted at
// /hooks: hooks and signal traps append lines to files in it, which the
// test reads on the host even after the container has gone.

// hookDir makes a host directory for a test's /hooks mount.
func hookDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(env.Dir, "hooks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// withHooks mounts dir at /hooks and adds the annotations.
func withHooks(cfg *runtime.ContainerConfig, dir string, annotations map[string]string) *runtime.ContainerConfig {
	cfg.Mounts = append(cfg.Mounts, &runtime.Mount{ContainerPath: "/hooks", HostPath: dir})
	if cfg.Annotations == nil {
		cfg.Annotations = map[string]string{}
	}
	for k, v := range annotations {
		cfg.Annotations[k] = v
	}
	return cfg
}

// execHook is a hook annotation running a shell snippet in the container.
func execHook(t *testing.T, script string) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"exec": map[string]any{"command": []string{"sh", "-c", script}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// readLines returns the lines of a file in a hook directory (none if absent).
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// waitLines polls a hook file until it has at least n lines.
func waitLines(t *testing.T, path string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines := readLines(t, path)
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %q after %s, want %d lines", path, lines, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopContainer calls StopContainer and returns how long it took.
func (c *client) stopContainer(id string, timeout int64) time.Duration {
	t := c.t
	t.Helper()
	start := time.Now()
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		t.Fatalf("StopContainer %s (timeout %d): %v", id, timeout, err)
	}
	return time.Since(start)
}

// tryStop is stopContainer for goroutines other than the test's.
func (c *client) tryStop(id string, timeout int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	_, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: timeout})
	return time.Since(start), err
}

// wantExit checks the recorded exit of a stopped container.
func wantExit(t *testing.T, st *runtime.ContainerStatus, code int32, reason string) {
	t.Helper()
	if st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != code || st.Reason != reason {
		t.Errorf("container is %v with exit code %d reason %q (message %q), want EXITED %d %q",
			st.State, st.ExitCode, st.Reason, st.Message, code, reason)
	}
	if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Errorf("finished at %d, started at %d", st.FinishedAt, st.StartedAt)
	}
}

// loop keeps a shell PID 1 alive; a trap runs between two short sleeps.
const loop = `while true; do sleep 0.1; done`

// waitTrapped polls the container's main process (through the host's
// /proc: the pod may share its PID namespace, so it need not be PID 1
// inside) until the shell has installed its handlers for sigs, caught or
// ignored: a stop signal that comes before the trap would kill the shell
// with the default action.
func (c *client) waitTrapped(id string, sigs ...syscall.Signal) {
	c.t.Helper()
	if err := trapped(rpcCtx(c.t), c.rt, id, sigs...); err != nil {
		c.t.Fatal(err)
	}
}

// trapped is waitTrapped for goroutines other than the test's.
func trapped(ctx context.Context, rt runtime.RuntimeServiceClient, id string, sigs ...syscall.Signal) error {
	resp, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return fmt.Errorf("ContainerStatus %s: %w", id, err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.Pid == 0 {
		return fmt.Errorf("container %s: no pid in the verbose status (%v): %q", id, err, resp.Info["info"])
	}
	statusFile := fmt.Sprintf("/proc/%d/status", info.Pid)
	return testenv.Poll(20*time.Second, 50*time.Millisecond, fmt.Sprintf("container %s trapping %v", id, sigs), func() (bool, error) {
		data, err := os.ReadFile(statusFile)
		if err != nil {
			return false, fmt.Errorf("container %s: %w", id, err)
		}
		var handled uint64
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "SigCgt" || k == "SigIgn") {
				m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					return false, fmt.Errorf("parse %s of %s: %w", k, statusFile, err)
				}
				handled |= m
			}
		}
		for _, sig := range sigs {
			if handled&(uint64(1)<<(uint(sig)-1)) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
}

// TestLifecycleHookOrder: postStart has run by the time StartContainer
// returns, preStop runs before the stop signal, and the container's own
// trap sees the signal after it.
func TestLifecycleHookOrder(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "hookorder")
	podID := c.runPod(pod)
	dir := hookDir(t)
	events := filepath.Join(dir, "events")
	cfg := withHooks(containerConfig("hooked", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/events; exit 0' TERM; echo start >> /hooks/events; `+loop), dir,
		map[string]string{
			// The entrypoint and postStart race, as in Kubernetes; waiting
			// for the entrypoint's line pins the order to check the rest.
			lifecycle.AnnotationPostStart: execHook(t, `i=0; until grep -q start /hooks/events || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done; echo poststart >> /hooks/events`),
			lifecycle.AnnotationPreStop:   execHook(t, `echo prestop >> /hooks/events`),
		})
	id := c.startContainer(podID, pod, cfg)
	// No polling: StartContainer returns only after the hook completed.
	if got := readLines(t, events); strings.Join(got, " ") != "start poststart" {
		t.Fatalf("after StartContainer the events are %q, want [start poststart]", got)
	}
	c.stopContainer(id, 30)
	if got := readLines(t, events); strings.Join(got, " ") != "start poststart prestop term" {
		t.Errorf("events %q, want [start poststart prestop term]", got)
	}
	wantExit(t, c.containerStatus(id), 0, "Completed")
}

// TestLifecycleFailingPostStart: StartContainer fails, the container is
// killed with its preStop run first, and its status says why.
func TestLifecycleFailingPostStart(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "poststartfail")
	podID := c.runPod(pod)
	dir := hookDir(t)
	cfg := withHooks(containerConfig("badhook", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/events; exit 0' TERM; `+loop), dir,
		map[string]string{
			lifecycle.AnnotationPostStart:        execHook(t, `echo hook-said-no; exit 7`),
			lifecycle.AnnotationPreStop:          execHook(t, `echo prestop >> /hooks/events`),
			lifecycle.AnnotationTerminationGrace: "10",
		})
	id := c.createContainer(podID, pod, cfg)
	_, err := c.rt.StartContainer(rpcCtx(t), &runtime.StartContainerRequest{ContainerId: id})
	if err == nil {
		t.Fatal("StartContainer succeeded with a failing postStart hook")
	}
	st := c.waitContainerState(id, runtime.ContainerState_CONTAINER_EXITED, 20*time.Second)
	if st.Reason != "PostStartHookError" || !strings.Contains(st.Message, "code 7") || !strings.Contains(st.Message, "hook-said-no") {
		t.Errorf("status reason %q message %q, want PostStartHookError naming exit code 7 and the output", st.Reason, st.Message)
	}
	if st.ExitCode != 0 {
		t.Errorf("exit code %d, want 0 from the TERM trap (a graceful kill)", st.ExitCode)
	}
	if got := readLines(t, filepath.Join(dir, "events")); strings.Join(got, " ") != "prestop term" {
		t.Errorf("events %q, want [prestop term]", got)
	}
}

// TestLifecyclePreStopLongerThanGrace: the hook is abandoned when the
// grace runs out, the stop signal still goes out and gets the 2 s minimum,
// then SIGKILL.
func TestLifecyclePreStopLongerThanGrace(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "longprestop")
	podID := c.runPod(pod)
	dir := hookDir(t)
	events := filepath.Join(dir, "events")
	cfg := withHooks(containerConfig("stubborn", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/events' TERM; `+loop), dir,
		map[string]string{lifecycle.AnnotationPreStop: execHook(t, `echo prestop >> /hooks/events; sleep 3600`)})
	id := c.startContainer(podID, pod, cfg)
	c.waitTrapped(id, syscall.SIGTERM)
	const grace = 2
	took := c.stopContainer(id, grace)
	min := grace*time.Second + lifecycle.MinGraceAfterPreStop
	if took < min-200*time.Millisecond || took > min+15*time.Second {
		t.Errorf("stop took %s, want about %s (grace, then the minimum for the signal)", took, min)
	}
	wantExit(t, c.containerStatus(id), 137, "Error")
	if got := readLines(t, events); len(got) < 2 || got[0] != "prestop" || got[1] != "term" {
		t.Errorf("events %q, want [prestop term]", got)
	}
}

// TestStopIgnoringSIGTERM: a container that ignores the stop signal is
// killed when the timeout runs out.
func TestStopIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "ignoreterm")
	podID := c.runPod(pod)
	id := c.startContainer(podID, pod, containerConfig("deaf", env.BusyboxImage, "sh", "-c", `trap '' TERM; `+loop))
	c.waitTrapped(id, syscall.SIGTERM)
	const timeout = 2
	took := c.stopContainer(id, timeout)
	if took < timeout*time.Second-200*time.Millisecond || took > timeout*time.Second+15*time.Second {
		t.Errorf("stop with timeout %ds took %s", timeout, took)
	}
	wantExit(t, c.containerStatus(id), 137, "Error")
}

// TestStopSignalFromImageAndConfig: the image's STOPSIGNAL (SIGUSR1) is
// used when the config names none, the config's stop_signal wins over it.
func TestStopSignalFromImageAndConfig(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "stopsignal")
	podID := c.runPod(pod)
	// PID 1 has no TERM handler, so SIGTERM would do nothing and the stop
	// would end in SIGKILL (137): the exit code tells which signal came.
	script := `trap 'exit 0' USR1; trap 'exit 3' USR2; ` + loop
	fromImage := c.startContainer(podID, pod, containerConfig("image-signal", env.StopSignalImage, "sh", "-c", script))
	cfg := containerConfig("config-signal", env.StopSignalImage, "sh", "-c", script)
	cfg.StopSignal = runtime.Signal_SIGNAL_SIGUSR2
	fromConfig := c.startContainer(podID, pod, cfg)
	c.waitTrapped(fromImage, syscall.SIGUSR1, syscall.SIGUSR2)
	c.waitTrapped(fromConfig, syscall.SIGUSR1, syscall.SIGUSR2)

	var wg sync.WaitGroup
	for _, id := range []string{fromImage, fromConfig} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if took, err := c.tryStop(id, 20); err != nil || took > 10*time.Second {
				t.Errorf("graceful stop of %s: %v after %s", id, err, took)
			}
		}()
	}
	wg.Wait()
	wantExit(t, c.containerStatus(fromImage), 0, "Completed")
	wantExit(t, c.containerStatus(fromConfig), 3, "Error")
	if got := c.containerStatus(fromConfig).StopSignal; got != runtime.Signal_SIGNAL_SIGUSR2 {
		t.Errorf("status stop_signal %v, want SIGUSR2", got)
	}
}

// TestStopConcurrentCallsSignalOnce: a second StopContainer while the
// first waits shortens the deadline, both return, and the container saw
// one stop signal.
func TestStopConcurrentCallsSignalOnce(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "concurrentstop")
	podID := c.runPod(pod)
	dir := hookDir(t)
	count := filepath.Join(dir, "count")
	id := c.startContainer(podID, pod, withHooks(containerConfig("counter", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/count' TERM; `+loop), dir, nil))
	c.waitTrapped(id, syscall.SIGTERM)

	start := time.Now()
	first := make(chan error, 1)
	go func() {
		_, err := c.tryStop(id, 60)
		first <- err
	}()
	// Once the first signal has been handled another one would be counted
	// (two signals in flight at once could merge in the kernel).
	waitLines(t, count, 1, 20*time.Second)
	var wg sync.WaitGroup
	for _, timeout := range []int64{2, 30} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.tryStop(id, timeout); err != nil {
				t.Errorf("StopContainer (timeout %d): %v", timeout, err)
			}
		}()
	}
	wg.Wait()
	if err := <-first; err != nil {
		t.Errorf("first StopContainer: %v", err)
	}
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("stops took %s: the 2s timeout did not shorten the 60s one", took)
	}
	if got := readLines(t, count); len(got) != 1 {
		t.Errorf("the container counted %d stop signals, want 1", len(got))
	}
	wantExit(t, c.containerStatus(id), 137, "Error")
	// Stopping an exited container succeeds and changes nothing.
	c.stopContainer(id, 0)
	wantExit(t, c.containerStatus(id), 137, "Error")
}

// TestStopCancelledRPCStaysGraceful: a client that gives up on
// StopContainer does not turn the graceful stop into a kill.
func TestStopCancelledRPCStaysGraceful(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "cancelstop")
	podID := c.runPod(pod)
	dir := hookDir(t)
	events := filepath.Join(dir, "events")
	// The trap takes a while to exit: a kill in the meantime shows as 137.
	id := c.startContainer(podID, pod, withHooks(containerConfig("slowexit", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/events; sleep 2; exit 0' TERM; `+loop), dir, nil))
	c.waitTrapped(id, syscall.SIGTERM)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 30})
		done <- err
	}()
	waitLines(t, events, 1, 20*time.Second)
	cancel()
	if err := <-done; err == nil {
		t.Log("StopContainer finished before the cancel")
	}
	st := c.waitContainerState(id, runtime.ContainerState_CONTAINER_EXITED, 25*time.Second)
	wantExit(t, st, 0, "Completed")
}

// TestStopPodSandboxStopsContainersInParallel: StopPodSandbox runs the
// annotated containers' preStop hooks at the same time (each waits for
// the other's), gives them their grace, and kills a container without
// annotations at once, as the kubelet has already stopped its own.
func TestStopPodSandboxStopsContainersInParallel(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "parallelstop")
	podID := c.runPod(pod)
	dir := hookDir(t)
	var ids []string
	for _, name := range []string{"a", "b"} {
		other := map[string]string{"a": "b", "b": "a"}[name]
		cfg := withHooks(containerConfig("hooked-"+name, env.BusyboxImage, "sh", "-c",
			`trap 'echo term >> /hooks/`+name+`; exit 0' TERM; `+loop), dir,
			map[string]string{
				lifecycle.AnnotationPreStop: execHook(t, `echo prestop >> /hooks/`+name+
					`; until [ -e /hooks/`+other+` ]; do sleep 0.05; done`),
				lifecycle.AnnotationTerminationGrace: "30",
			})
		id := c.startContainer(podID, pod, cfg)
		c.waitTrapped(id, syscall.SIGTERM)
		ids = append(ids, id)
	}
	plain := c.startContainer(podID, pod, withHooks(containerConfig("plain", env.BusyboxImage, "sh", "-c",
		`trap 'echo term >> /hooks/plain; exit 0' TERM; `+loop), dir, nil))

	start := time.Now()
	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	// One after the other, the first hook would wait out its 30 s grace.
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("StopPodSandbox took %s: containers stopped one by one?", took)
	}
	for i, name := range []string{"a", "b"} {
		if got := readLines(t, filepath.Join(dir, name)); strings.Join(got, " ") != "prestop term" {
			t.Errorf("container %s events %q, want [prestop term]", name, got)
		}
		wantExit(t, c.containerStatus(ids[i]), 0, "Completed")
	}
	if got := readLines(t, filepath.Join(dir, "plain")); len(got) != 0 {
		t.Errorf("the unannotated container got the stop signal (%q); want an immediate kill", got)
	}
	wantExit(t, c.containerStatus(plain), 137, "Error")
	if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod is %v after StopPodSandbox", st.State)
	}
}

// TestLifecycleInvalidHookRejected: malformed hook annotations fail
// CreateContainer with InvalidArgument.
func TestLifecycleInvalidHookRejected(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "badhookjson")
	podID := c.runPod(pod)
	for i, ann := range []map[string]string{
		{lifecycle.AnnotationPostStart: `{"exec":{"cmd":["true"]}}`},
		{lifecycle.AnnotationPreStop: `{"httpGet":{"port":"http"}}`},
		{lifecycle.AnnotationTerminationGrace: "soon"},
	} {
		cfg := containerConfig("bad"+strconv.Itoa(i), env.BusyboxImage, idleCmd...)
		cfg.Annotations = ann
		_, err := c.rt.CreateContainer(rpcCtx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		wantCode(t, "CreateContainer with "+strings.Join(keys(ann), ","), err, codes.InvalidArgument)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
