//go:build linux

package integration

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/internal/faultpoint"
)

// restartPods is how many pods TestRestartKeepsPods runs across restarts.
const restartPods = 30

// TestRestartKeepsPods runs 30 pods, each with a container printing a
// counter every 100 ms, then restarts crishim twice - SIGTERM, then SIGKILL.
// Each time: every pod and container is listed again with the same ID,
// state, IP, labels, annotations, exit code and log path; the counters
// continue in the same log files with nothing lost or repeated; exec and
// stop work; a container that exited while crishim was down reports its
// real exit code and the time it exited.
func TestRestartKeepsPods(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	crishim, _ := env.Crishim()

	type podPlan struct {
		pod  *runtime.PodSandboxConfig
		ctrs []*runtime.ContainerConfig
	}
	plans := make([]podPlan, restartPods)
	// Pods 0 and 1 each hold a waiter released while crishim is down (once
	// per restart); pod 2 a container that exited before the restarts.
	signalDirs := make([]string, 2)
	for i := range plans {
		pod := podConfig(t, fmt.Sprintf("restart%02d", i))
		pod.Labels["idx"] = fmt.Sprint(i)
		pod.Annotations = map[string]string{"crishim.test/idx": fmt.Sprint(i)}
		ticker := containerConfig("ticker", env.BusyboxImage, tickerCmd...)
		ticker.Labels = map[string]string{"role": "ticker"}
		ticker.Annotations = map[string]string{"crishim.test/pod": fmt.Sprint(i)}
		ctrs := []*runtime.ContainerConfig{ticker}
		if i < 2 {
			signalDirs[i] = filepath.Join(pod.LogDirectory, "signal")
			if err := os.MkdirAll(signalDirs[i], 0o755); err != nil {
				t.Fatal(err)
			}
			w := containerConfig("waiter", env.BusyboxImage, waiterCmd(10+i)...)
			w.Mounts = []*runtime.Mount{{ContainerPath: "/signal", HostPath: signalDirs[i]}}
			ctrs = append(ctrs, w)
		}
		if i == 2 {
			ctrs = append(ctrs, containerConfig("quitter", env.BusyboxImage, "sh", "-c", "echo bye; exit 3"))
		}
		plans[i] = podPlan{pod, ctrs}
	}

	podIDs := make([]string, restartPods)
	ctrIDs := make([][]string, restartPods)
	c.removePodsAtEnd(func() []string { return podIDs })
	start := time.Now()
	errs := parallel(restartPods, 6, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var err error
		podIDs[i], ctrIDs[i], err = c.startPodRaw(ctx, plans[i].pod, plans[i].ctrs...)
		return err
	})
	if msgs := firstErrors(errs, 5); len(msgs) > 0 {
		t.Fatalf("starting %d pods: %s", restartPods, strings.Join(msgs, "; "))
	}
	t.Logf("started %d pods with %d containers in %s", restartPods, restartPods+3, time.Since(start).Round(time.Millisecond))
	quitter := ctrIDs[2][1]
	c.waitContainerState(quitter, runtime.ContainerState_CONTAINER_EXITED, 30*time.Second)

	tickerLog := func(i int) string { return filepath.Join(plans[i].pod.LogDirectory, "ticker.log") }
	for i := range plans {
		waitLog(t, tickerLog(i), 30*time.Second, func(l map[string][]string) bool { return len(l["stdout"]) >= 3 })
	}

	for round, how := range []string{"SIGTERM", "SIGKILL"} {
		ctx := rpcCtx(t)
		beforePods, beforeCtrs, err := c.views(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(beforePods) != restartPods || len(beforeCtrs) != restartPods+3 {
			t.Fatalf("%s: %d pods and %d containers listed before the restart, want %d and %d", how, len(beforePods), len(beforeCtrs), restartPods, restartPods+3)
		}
		lastTick := make([]int, restartPods)
		for i := range plans {
			lastTick[i] = readTicks(t, tickerLog(i)).last
		}

		if how == "SIGTERM" {
			if err := crishim.Stop(); err != nil {
				t.Fatalf("stop crishim: %v", err)
			}
		} else if err := crishim.Kill(); err != nil {
			t.Fatalf("kill crishim: %v", err)
		}
		// While crishim is down, one waiter exits.
		waiter := ctrIDs[round][1]
		released := time.Now()
		if err := os.WriteFile(filepath.Join(signalDirs[round], "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		code, exitedAt := taskExit(t, waiter, 20*time.Second)
		if code != uint32(10+round) {
			t.Fatalf("waiter exited %d in containerd, want %d", code, 10+round)
		}
		restarted := time.Now()
		if err := crishim.Start(); err != nil {
			t.Fatalf("start crishim after %s: %v", how, err)
		}
		recoveredIn := time.Since(restarted)
		c.reconnect()
		ctx = rpcCtx(t)

		// The waiter's exit is recorded from containerd, the rest is unchanged.
		st := c.waitContainerState(waiter, runtime.ContainerState_CONTAINER_EXITED, 20*time.Second)
		if st.ExitCode != int32(10+round) || st.Reason != "Error" {
			t.Errorf("%s: waiter that exited while crishim was down: code %d reason %q, want %d Error", how, st.ExitCode, st.Reason, 10+round)
		}
		if d := time.Unix(0, st.FinishedAt).Sub(exitedAt); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: waiter finished at %s, containerd saw the exit at %s", how, time.Unix(0, st.FinishedAt), exitedAt)
		}
		if fin := time.Unix(0, st.FinishedAt); fin.Before(released) || fin.After(restarted) {
			t.Errorf("%s: waiter finished at %s, outside the downtime %s - %s", how, fin, released, restarted)
		}
		afterPods, afterCtrs, err := c.views(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diffs := diffViews(beforePods, beforeCtrs, afterPods, afterCtrs, map[string]bool{waiter: true}); len(diffs) > 0 {
			t.Errorf("after %s restart, %d differences:\n%s", how, len(diffs), strings.Join(diffs, "\n"))
		}
		if st := c.containerStatus(quitter); st.ExitCode != 3 || st.State != runtime.ContainerState_CONTAINER_EXITED {
			t.Errorf("%s: container that exited before the restart: %v code %d, want EXITED 3", how, st.State, st.ExitCode)
		}

		// Output keeps flowing into the same files, none lost or repeated.
		var gaps, repeats, lines int
		var mu sync.Mutex
		errs := parallel(restartPods, 6, func(i int) error {
			deadline := time.Now().Add(20 * time.Second)
			for {
				s := readTicks(t, tickerLog(i))
				if s.last >= lastTick[i]+20 {
					mu.Lock()
					gaps, repeats, lines = gaps+s.gaps, repeats+s.repeats, lines+s.n
					mu.Unlock()
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("ticker of pod %d: last counter %d, was %d before the restart", i, s.last, lastTick[i])
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		if msgs := firstErrors(errs, 5); len(msgs) > 0 {
			t.Errorf("%s: logs stopped flowing: %s", how, strings.Join(msgs, "; "))
		}
		if gaps+repeats > 0 {
			t.Errorf("%s: ticker logs have %d gaps and %d repeated counters over %d lines", how, gaps, repeats, lines)
		}
		execErrs := parallel(restartPods, 6, func(i int) error {
			resp, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctrIDs[i][0], Cmd: []string{"echo", fmt.Sprint("after-", i)}, Timeout: 20})
			if err != nil {
				return err
			}
			if got, want := string(resp.Stdout), fmt.Sprint("after-", i, "\n"); got != want {
				return fmt.Errorf("exec output %q, want %q", got, want)
			}
			return nil
		})
		if msgs := firstErrors(execErrs, 5); len(msgs) > 0 {
			t.Errorf("%s: exec after restart: %s", how, strings.Join(msgs, "; "))
		}
		t.Logf("%s: crishim answered %s after start; %d pods, %d containers recovered identical; %d log lines checked, %d gaps, %d repeats",
			how, recoveredIn.Round(time.Millisecond), len(afterPods), len(afterCtrs), lines, gaps, repeats)
	}

	// Stop works on a recovered container, and its exit is recorded.
	ticker := ctrIDs[5][0]
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ticker, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer after restarts: %v", err)
	}
	if st := c.waitContainerState(ticker, runtime.ContainerState_CONTAINER_EXITED, 10*time.Second); st.ExitCode != 4 {
		t.Errorf("exit code of a recovered ticker stopped with SIGTERM: %d, want 4", st.ExitCode)
	}
}

// TestContainerdRestart stops containerd under running pods and starts it
// again: crishim says RuntimeReady=false while it is gone, reconnects on
// its own, keeps every pod and container, and records the exit a container
// made while containerd was down with its real code.
func TestContainerdRestart(t *testing.T) {
	testContainerdRestart(t, 4, env.Containerd.Restart)
}

// TestContainerdKilled is TestContainerdRestart with SIGKILL under 10 pods:
// containerd cannot close its connections or flush anything first.
func TestContainerdKilled(t *testing.T) {
	testContainerdRestart(t, 10, env.Containerd.Crash)
}

// testContainerdRestart runs n pods, each with a ticker (pod 0 also with a
// waiter released while containerd is down), takes containerd down and up
// again with restart, checks that crishim lists and reports them all
// unchanged while containerd is down, and then that nothing changed but the
// waiter's exit, that the tickers' output went on without a gap or a
// repeat, that exec and new pods work, and that every pod then stops and
// goes without leaving anything behind.
func testContainerdRestart(t *testing.T, n int, restart func(during func() error) error) {
	c := newClient(t)
	c.trackConns()
	assertNoLeaks(t, "before the test")
	pods := make([]*runtime.PodSandboxConfig, n)
	podIDs := make([]string, n)
	ctrIDs := make([][]string, n)
	signal := ""
	for i := range pods {
		pods[i] = podConfig(t, fmt.Sprintf("ctrd%d", i))
	}
	signal = filepath.Join(pods[0].LogDirectory, "signal")
	if err := os.MkdirAll(signal, 0o755); err != nil {
		t.Fatal(err)
	}
	c.removePodsAtEnd(func() []string { return podIDs })
	errs := parallel(n, 4, func(i int) error {
		ctrs := []*runtime.ContainerConfig{containerConfig("ticker", env.BusyboxImage, tickerCmd...)}
		if i == 0 {
			w := containerConfig("waiter", env.BusyboxImage, waiterCmd(7)...)
			w.Mounts = []*runtime.Mount{{ContainerPath: "/signal", HostPath: signal}}
			ctrs = append(ctrs, w)
		}
		var err error
		podIDs[i], ctrIDs[i], err = c.startPodRaw(rpcCtx(t), pods[i], ctrs...)
		return err
	})
	if msgs := firstErrors(errs, 5); len(msgs) > 0 {
		t.Fatalf("starting pods: %s", strings.Join(msgs, "; "))
	}
	beforePods, beforeCtrs, err := c.views(rpcCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	waiter := ctrIDs[0][1]
	shims := len(env.Containerd.Shims())
	tickerLog := func(i int) string { return filepath.Join(pods[i].LogDirectory, "ticker.log") }
	lastTick := make([]int, n)
	for i := range pods {
		waitLog(t, tickerLog(i), 30*time.Second, func(l map[string][]string) bool { return len(l["stdout"]) >= 3 })
		lastTick[i] = readTicks(t, tickerLog(i)).last
	}

	runtimeReady := func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.rt.Status(ctx, &runtime.StatusRequest{})
		if err != nil {
			return false, err
		}
		for _, cond := range resp.GetStatus().GetConditions() {
			if cond.Type == runtime.RuntimeReady {
				return cond.Status, nil
			}
		}
		return false, errors.New("no RuntimeReady condition")
	}
	var downFor time.Duration
	err = restart(func() error {
		stopped := time.Now()
		deadline := stopped.Add(15 * time.Second)
		for {
			ready, err := runtimeReady()
			if err != nil {
				return fmt.Errorf("Status while containerd is down: %w", err)
			}
			if !ready {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("RuntimeReady still true 15s after containerd stopped")
			}
			time.Sleep(100 * time.Millisecond)
		}
		// crishim keeps serving what it knows while containerd is away.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		downPods, downCtrs, err := c.views(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("listing pods and containers while containerd is down: %w", err)
		}
		if diffs := diffViews(beforePods, beforeCtrs, downPods, downCtrs, nil); len(diffs) > 0 {
			return fmt.Errorf("while containerd is down, %d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
		}
		// The waiter exits now, with containerd away.
		if err := os.WriteFile(filepath.Join(signal, "go"), nil, 0o644); err != nil {
			return err
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			if _, err := os.Stat(filepath.Join(signal, "done")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("waiter did not see the signal")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := len(env.Containerd.Shims()); got != shims {
			return fmt.Errorf("%d shims while containerd is down, %d before", got, shims)
		}
		downFor = time.Since(stopped)
		return nil
	})
	if err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	back := time.Now()
	for {
		ready, err := runtimeReady()
		if ready {
			break
		}
		if time.Since(back) > 30*time.Second {
			t.Fatalf("RuntimeReady not true 30s after containerd returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	readyIn := time.Since(back)

	st := c.waitContainerState(waiter, runtime.ContainerState_CONTAINER_EXITED, 30*time.Second)
	if st.ExitCode != 7 || st.Reason != "Error" {
		t.Errorf("container that exited while containerd was down: code %d reason %q, want 7 Error", st.ExitCode, st.Reason)
	}
	afterPods, afterCtrs, err := c.views(rpcCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diffs := diffViews(beforePods, beforeCtrs, afterPods, afterCtrs, map[string]bool{waiter: true}); len(diffs) > 0 {
		t.Errorf("after the containerd restart, %d differences:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	for i := range pods {
		if res := c.execSync(ctrIDs[i][0], 20, "echo", "ok"); string(res.Stdout) != "ok\n" {
			t.Errorf("exec in pod %d after the containerd restart: %q", i, res.Stdout)
		}
	}
	var gaps, repeats, lines int
	for i := range pods {
		deadline := time.Now().Add(20 * time.Second)
		s := readTicks(t, tickerLog(i))
		for s.last < lastTick[i]+20 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			s = readTicks(t, tickerLog(i))
		}
		if s.last < lastTick[i]+20 {
			t.Errorf("ticker of pod %d: last counter %d, was %d before the restart", i, s.last, lastTick[i])
		}
		gaps, repeats, lines = gaps+s.gaps, repeats+s.repeats, lines+s.n
	}
	if gaps+repeats > 0 {
		t.Errorf("ticker logs have %d gaps and %d repeated counters over %d lines", gaps, repeats, lines)
	}
	// New work is served too.
	pod := podConfig(t, "ctrd-new")
	podID := c.runPod(pod)
	c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
	t.Logf("containerd down %s; RuntimeReady=false seen while down, true %s after it returned; %d pods kept; %d log lines, %d gaps, %d repeats",
		downFor.Round(time.Millisecond), readyIn.Round(time.Millisecond), len(afterPods), lines, gaps, repeats)

	// Everything made before the restart goes as cleanly as anything else.
	c.removePod(podID)
	errs = parallel(n, 4, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podIDs[i]}); err != nil {
			return err
		}
		_, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podIDs[i]})
		return err
	})
	if msgs := firstErrors(errs, 5); len(msgs) > 0 {
		t.Fatalf("removing the pods after the containerd restart: %s", strings.Join(msgs, "; "))
	}
	for i := range pods {
		c.assertPodGone(podIDs[i], ctrIDs[i])
	}
	assertNoLeaks(t, "after removing every pod")
	if ctrs, snaps, leases := containerdObjects(t); len(ctrs)+len(snaps)+len(leases) > 0 {
		t.Errorf("containerd still holds containers %v, active snapshots %v, leases %v", ctrs, snaps, leases)
	}
	if shims := env.Containerd.Shims(); len(shims) > 0 {
		t.Errorf("%d shims still run: %v", len(shims), shims)
	}
}

// TestCrashMidway kills crishim at fault points inside RunPodSandbox,
// CreateContainer and StopPodSandbox. After the restart the object is
// either complete or gone with everything it had: netns, IP allocation,
// snapshot, containerd records; and the same request then succeeds.
func TestCrashMidway(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	crishim, _ := env.Crishim()
	assertNoLeaks(t, "before the test")

	// crash arms point, runs call (which must fail: crishim dies under it),
	// waits for the crash and restarts crishim unarmed.
	crash := func(t *testing.T, point, action string, call func(ctx context.Context) error) {
		t.Helper()
		crishim.SetEnv(faultpoint.EnvVar + "=" + point + "=" + action)
		if err := crishim.Restart(); err != nil {
			t.Fatalf("restart crishim with %s armed: %v", point, err)
		}
		c.reconnect()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := call(ctx)
		cancel()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("the call crishim died in returned %v, want Unavailable", err)
		}
		code, err := crishim.WaitExit(30 * time.Second)
		if err != nil {
			t.Fatalf("crishim did not crash at %s: %v", point, err)
		}
		if want := map[string]int{"exit": faultpoint.ExitCode, "kill": -1}[action]; code != want {
			t.Errorf("crishim exited %d at %s, want %d", code, point, want)
		}
		crishim.SetEnv()
		started := time.Now()
		if err := crishim.Start(); err != nil {
			t.Fatalf("start crishim after the crash at %s: %v", point, err)
		}
		t.Logf("crashed at %s (%s); restarted and recovered in %s", point, action, time.Since(started).Round(time.Millisecond))
		c.reconnect()
	}

	for _, tc := range []struct{ point, action string }{
		{"sandbox.afterNetwork", "exit"},
		{"sandbox.beforeStart", "kill"},
		{"sandbox.afterStart", "exit"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			pod := podConfig(t, "crash")
			crash(t, tc.point, tc.action, func(ctx context.Context) error {
				_, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
				return err
			})
			list, err := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				if p.Metadata.Name == pod.Metadata.Name {
					t.Errorf("half-made pod %s listed after the crash (state %v)", p.Id, p.State)
				}
			}
			assertNoLeaks(t, "after the crash and restart")
			// The name is free: the kubelet's retry succeeds.
			podID := c.runPod(pod)
			if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
				t.Errorf("retried pod: %v ip %q", st.State, st.GetNetwork().GetIp())
			}
			c.removePod(podID)
			assertNoLeaks(t, "after removing the retried pod")
		})
	}

	t.Run("container.afterCreate", func(t *testing.T) {
		pod := podConfig(t, "crashctr")
		podID := c.runPod(pod)
		beforeCtrs, beforeSnaps, _ := containerdObjects(t)
		cfg := containerConfig("victim", env.BusyboxImage, idleCmd...)
		crash(t, "container.afterCreate", "exit", func(ctx context.Context) error {
			_, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			return err
		})
		list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Containers) != 0 {
			t.Errorf("half-made container listed after the crash: %v", list.Containers)
		}
		afterCtrs, afterSnaps, _ := containerdObjects(t)
		if fmt.Sprint(afterCtrs) != fmt.Sprint(beforeCtrs) || fmt.Sprint(afterSnaps) != fmt.Sprint(beforeSnaps) {
			t.Errorf("containerd containers %v and active snapshots %v after the crash; before %v and %v", afterCtrs, afterSnaps, beforeCtrs, beforeSnaps)
		}
		if j := journalEntries(); len(j) > 0 {
			t.Errorf("journal entries left: %v", j)
		}
		// Not "name is reserved": the retry makes the container.
		id := c.startContainer(podID, pod, cfg)
		if st := c.containerStatus(id); st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("retried container: %v", st.State)
		}
		c.removePod(podID)
		assertNoLeaks(t, "after removing the pod")
	})

	t.Run("sandbox.beforeTeardown", func(t *testing.T) {
		pod := podConfig(t, "crashstop")
		podID := c.runPod(pod)
		c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
		ip := c.podStatus(podID).GetNetwork().GetIp()
		crash(t, "sandbox.beforeTeardown", "exit", func(ctx context.Context) error {
			_, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID})
			return err
		})
		// The pause was dead: the restart finished the stop.
		if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod after the interrupted stop: %v, want NOTREADY", st.State)
		}
		if ips, err := env.Network.IPAllocations(); err != nil || contains(ips, ip) {
			t.Errorf("IP %s still allocated after the restart finished the stop (%v, %v)", ip, ips, err)
		}
		if ns := netnsFiles(); len(ns) > 0 {
			t.Errorf("netns left after the restart finished the stop: %v", ns)
		}
		if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("StopPodSandbox again: %v", err)
		}
		c.removePod(podID)
		assertNoLeaks(t, "after removing the pod")
	})
}

// TestRetryAfterClientTimeout is the classic "name is reserved" failure: a
// slow RunPodSandbox or CreateContainer outlives its client's 1 s deadline
// and the client retries with the same metadata. The retry must get the
// object the first request made - waiting for it while it is under way,
// or at once when it is done - and only once; a further request gets
// AlreadyExists. Fault points make creation take 3 s.
func TestRetryAfterClientTimeout(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	c.armFaultPoints("sandbox.beforeStart=sleep:3s,container.afterCreate=sleep:3s")

	shortCall := func(call func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := call(ctx); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("slow call with a 1s deadline: %v, want DeadlineExceeded", err)
		}
	}
	podsNamed := func(name string) []*runtime.PodSandbox {
		list, err := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []*runtime.PodSandbox
		for _, p := range list.Items {
			if p.Metadata.Name == name {
				out = append(out, p)
			}
		}
		return out
	}

	// Retry while the first request is still working.
	pod := podConfig(t, "retry")
	shortCall(func(ctx context.Context) error {
		_, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod})
		return err
	})
	retryStart := time.Now()
	podID := c.runPod(pod)
	t.Logf("RunPodSandbox retry during the first request got %s after %s", podID[:12], time.Since(retryStart).Round(time.Millisecond))
	if got := podsNamed(pod.Metadata.Name); len(got) != 1 || got[0].Id != podID || got[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pods named %s after the retry: %v, want just %s READY", pod.Metadata.Name, got, podID)
	}
	_, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: pod})
	wantCode(t, "a third RunPodSandbox of the same pod", err, codes.AlreadyExists)
	if err != nil && !strings.Contains(err.Error(), podID) {
		t.Errorf("AlreadyExists does not name the pod: %v", err)
	}

	// Retry after the first request finished on its own.
	pod2 := podConfig(t, "retrylate")
	shortCall(func(ctx context.Context) error {
		_, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pod2})
		return err
	})
	deadline := time.Now().Add(30 * time.Second)
	for len(podsNamed(pod2.Metadata.Name)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned RunPodSandbox did not finish")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pod2ID := c.runPod(pod2)
	if got := podsNamed(pod2.Metadata.Name); len(got) != 1 || got[0].Id != pod2ID {
		t.Errorf("pods named %s: %v, want just %s", pod2.Metadata.Name, got, pod2ID)
	}

	// The same for CreateContainer.
	cfg := containerConfig("slow", env.BusyboxImage, idleCmd...)
	shortCall(func(ctx context.Context) error {
		_, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		return err
	})
	ctrID := c.startContainer(podID, pod, cfg)
	list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 1 || list.Containers[0].Id != ctrID || list.Containers[0].State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("containers after the CreateContainer retry: %v, want just %s RUNNING", list.Containers, ctrID)
	}
	_, err = c.rt.CreateContainer(rpcCtx(t), &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	wantCode(t, "a third CreateContainer of the same container", err, codes.AlreadyExists)
}

// TestConcurrentRunPodSandbox runs 50 pods at once, all of which must
// succeed with distinct IDs and IPs, then races pairs of RunPodSandbox for
// one name: exactly one sandbox, and AlreadyExists for the other.
func TestConcurrentRunPodSandbox(t *testing.T) {
	c := newClient(t)
	const n = 50
	var mu sync.Mutex
	var all []string
	c.removePodsAtEnd(func() []string { mu.Lock(); defer mu.Unlock(); return all })
	pods := make([]*runtime.PodSandboxConfig, n)
	for i := range pods {
		pods[i] = podConfig(t, fmt.Sprintf("conc%02d", i))
	}
	ids := make([]string, n)
	start := time.Now()
	errs := parallel(n, n, func(i int) error {
		resp, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: pods[i]})
		if err != nil {
			return err
		}
		ids[i] = resp.PodSandboxId
		mu.Lock()
		all = append(all, resp.PodSandboxId)
		mu.Unlock()
		return nil
	})
	took := time.Since(start)
	if msgs := firstErrors(errs, 5); len(msgs) > 0 {
		t.Fatalf("%d parallel RunPodSandbox: %s", n, strings.Join(msgs, "; "))
	}
	seenIP := map[string]bool{}
	seenID := map[string]bool{}
	for _, id := range ids {
		st := c.podStatus(id)
		ip := st.GetNetwork().GetIp()
		if st.State != runtime.PodSandboxState_SANDBOX_READY || ip == "" || seenIP[ip] || seenID[id] {
			t.Errorf("pod %s: state %v ip %q (duplicate ip %v, duplicate id %v)", id, st.State, ip, seenIP[ip], seenID[id])
		}
		seenIP[ip], seenID[id] = true, true
	}
	t.Logf("%d parallel RunPodSandbox succeeded in %s with %d distinct IDs and IPs", n, took.Round(time.Millisecond), len(seenIP))

	for round := 0; round < 3; round++ {
		pod := podConfig(t, fmt.Sprintf("twin%d", round))
		results := make([]error, 2)
		got := make([]string, 2)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: pod})
				results[i] = err
				if err == nil {
					got[i] = resp.PodSandboxId
					mu.Lock()
					all = append(all, resp.PodSandboxId)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		ok, exists := 0, 0
		for _, err := range results {
			switch status.Code(err) {
			case codes.OK:
				ok++
			case codes.AlreadyExists:
				exists++
			default:
				t.Errorf("round %d: %v", round, err)
			}
		}
		if ok != 1 || exists != 1 {
			t.Errorf("round %d: %d successes and %d AlreadyExists (%v), want 1 and 1", round, ok, exists, results)
		}
		list, err := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		named := 0
		for _, p := range list.Items {
			if p.Metadata.Name == pod.Metadata.Name {
				named++
			}
		}
		if named != 1 {
			t.Errorf("round %d: %d pods named %s, want 1", round, named, pod.Metadata.Name)
		}
	}
}

var churn = flag.Int("churn", 50, "pod lifecycles TestChurn runs (`make churn` runs 1000)")

// TestChurn runs pod lifecycles - run, create and start a container, exec,
// stop, remove - and then finds nothing above the level it started from:
// netns, IP allocations, mounts, shims, containerd containers, snapshots
// and leases, crishim's open files, threads and goroutines.
func TestChurn(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	crishim, _ := env.Crishim()
	port, err := freePortForDebug()
	if err != nil {
		t.Fatal(err)
	}
	// The pprof endpoint counts goroutines; it is off by default.
	crishim.SetExtraArgs("--debug-address", fmt.Sprintf("127.0.0.1:%d", port))
	if err := crishim.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		crishim.SetExtraArgs()
		if err := crishim.Restart(); err != nil {
			t.Errorf("restart crishim without the debug endpoint: %v", err)
		}
	})
	c.reconnect()
	assertNoLeaks(t, "before the churn")

	lifecycle := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pod := podConfigNoT(fmt.Sprintf("churn%d", i))
		podID, ids, err := c.startPodRaw(ctx, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
		if err == nil {
			var resp *runtime.ExecSyncResponse
			resp, err = c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ids[0], Cmd: []string{"echo", "hi"}, Timeout: 20})
			if err == nil && string(resp.Stdout) != "hi\n" {
				err = fmt.Errorf("exec output %q", resp.Stdout)
			}
		}
		if podID != "" {
			if _, serr := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); serr != nil && err == nil {
				err = serr
			}
			if _, rerr := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); rerr != nil && err == nil {
				err = rerr
			}
		}
		os.RemoveAll(pod.LogDirectory)
		return err
	}
	// Warm up: pools and caches that grow once are not leaks.
	for i := 0; i < 3; i++ {
		if err := lifecycle(-1 - i); err != nil {
			t.Fatalf("warm-up lifecycle: %v", err)
		}
	}
	pid := crishim.Pid()
	type level struct{ fds, threads, goroutines int }
	measure := func() level {
		return level{fdCount(pid), threadCount(pid), goroutines(t, port)}
	}
	base := measure()

	start := time.Now()
	errs := parallel(*churn, 4, lifecycle)
	took := time.Since(start)
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if msgs := firstErrors(errs, 5); len(msgs) > 0 {
		t.Errorf("%d of %d lifecycles failed: %s", failed, *churn, strings.Join(msgs, "; "))
	}

	// Exit handling finishes in the background; give it a bounded moment.
	// Threads are reported, not checked: Go keeps the OS threads a load
	// peak made, which is not a leak.
	var after level
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = measure()
		if after.fds <= base.fds && after.goroutines <= base.goroutines {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after %d lifecycles crishim holds %d fds, %d threads, %d goroutines; %d, %d, %d before", *churn, after.fds, after.threads, after.goroutines, base.fds, base.threads, base.goroutines)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctrs, snaps, leases := containerdObjects(t)
	if len(ctrs)+len(snaps)+len(leases) > 0 {
		t.Errorf("containerd still holds containers %v, active snapshots %v, leases %v", ctrs, snaps, leases)
	}
	if shims := env.Containerd.Shims(); len(shims) > 0 {
		t.Errorf("%d shims still run: %v", len(shims), shims)
	}
	assertNoLeaks(t, fmt.Sprintf("after %d lifecycles", *churn))
	t.Logf("%d lifecycles (run, create, start, exec, stop, remove) in %s (%.1f/s), %d failed; crishim fds %d -> %d, threads %d -> %d, goroutines %d -> %d; leaks: containerd %d, shims %d",
		*churn, took.Round(time.Millisecond), float64(*churn)/took.Seconds(), failed, base.fds, after.fds, base.threads, after.threads, base.goroutines, after.goroutines,
		len(ctrs)+len(snaps)+len(leases), len(env.Containerd.Shims()))
}
