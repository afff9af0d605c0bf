//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The fault tests kill parts of the stack under running pods, so none of
// them is parallel: they have containerd and crishim to themselves.

// taskPIDs maps each task in crishim's namespace to its process ID,
// straight from containerd.
func taskPIDs(t *testing.T) map[string]uint32 {
	t.Helper()
	client, ctx, done := containerdNS(t)
	defer done()
	resp, err := client.TaskService().List(ctx, nil)
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	out := map[string]uint32{}
	for _, task := range resp.Tasks {
		out[task.ID] = task.Pid
	}
	return out
}

// processAlive reports whether pid runs (and is not a zombie).
func processAlive(pid uint32) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitNoLeaks polls until assertNoLeaks would pass, and fails the test
// with what is left when timeout passes first; it reports which.
func waitNoLeaks(t *testing.T, timeout time.Duration, when string) bool {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; {
		leaks, err := env.Leaks()
		if err != nil {
			t.Fatal(err)
		}
		if len(leaks)+len(netnsFiles())+len(journalEntries()) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			assertNoLeaks(t, fmt.Sprintf("%s (after %s)", when, timeout))
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitPodState polls until the pod reaches state.
func (c *client) waitPodState(id string, state runtime.PodSandboxState, timeout time.Duration) *runtime.PodSandboxStatus {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.podStatus(id)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s is %v after %s, want %v", id, st.State, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShimKilled kills the shim of a running pod with SIGKILL. Its
// containers must report EXITED with a reason and an exit code, the pod
// NOTREADY; no process of the pod may survive; StopPodSandbox and
// RemovePodSandbox must then succeed and leave nothing: no netns, IP,
// mount, shim, containerd container, task or snapshot, and nothing of
// crishim's. Another pod is not disturbed.
func TestShimKilled(t *testing.T) {
	c := newClient(t)
	assertNoLeaks(t, "before the test")

	bystander := podConfig(t, "shimbystander")
	bystanderID := c.runPod(bystander)
	bystanderCtr := c.startContainer(bystanderID, bystander, containerConfig("idle", env.BusyboxImage, idleCmd...))

	pod := podConfig(t, "shimkill")
	podID := c.runPod(pod)
	ctrIDs := []string{
		c.startContainer(podID, pod, containerConfig("ticker", env.BusyboxImage, tickerCmd...)),
		c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...)),
	}
	ip := c.podStatus(podID).GetNetwork().GetIp()
	if ips, err := env.Network.IPAllocations(); err != nil || !contains(ips, ip) {
		t.Fatalf("host-local allocations %v (%v) lack the pod IP %s", ips, err, ip)
	}
	shims := env.Containerd.ShimOf(podID)
	if len(shims) != 1 {
		t.Fatalf("shims started for pod %s: %v, want one", podID[:12], shims)
	}
	pids := taskPIDs(t)
	var podPIDs []uint32
	for _, id := range append([]string{podID}, ctrIDs...) {
		if pids[id] == 0 || !processAlive(pids[id]) {
			t.Fatalf("task %s has no live process (pid %d)", id[:12], pids[id])
		}
		podPIDs = append(podPIDs, pids[id])
	}

	killed := time.Now()
	if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
		t.Fatalf("kill shim %d: %v", shims[0], err)
	}
	for _, id := range ctrIDs {
		st := c.waitContainerState(id, runtime.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if st.Reason == "" || st.ExitCode == 0 || !strings.Contains(st.Message, "shim") {
			t.Errorf("container %s after its shim was killed: reason %q exit code %d message %q, want a reason, a non-zero code and a message blaming the shim",
				st.Metadata.Name, st.Reason, st.ExitCode, st.Message)
		}
		if fin := time.Unix(0, st.FinishedAt); fin.Before(killed.Add(-time.Second)) || fin.After(time.Now()) {
			t.Errorf("container %s finished at %s, the shim was killed at %s", st.Metadata.Name, fin, killed)
		}
		t.Logf("container %s: EXITED, reason %q, exit code %d, message %q", st.Metadata.Name, st.Reason, st.ExitCode, st.Message)
	}
	c.waitPodState(podID, runtime.PodSandboxState_SANDBOX_NOTREADY, 30*time.Second)
	t.Logf("pod NOTREADY and its containers EXITED %s after the shim was killed", time.Since(killed).Round(time.Millisecond))
	for deadline := time.Now().Add(30 * time.Second); ; {
		var alive []uint32
		for _, pid := range podPIDs {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v of the pod still run 30s after its shim was killed", alive)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox after the shim was killed: %v", err)
	}
	if ips, err := env.Network.IPAllocations(); err != nil || contains(ips, ip) {
		t.Errorf("IP %s still allocated after StopPodSandbox (%v, %v)", ip, ips, err)
	}
	if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox after the shim was killed: %v", err)
	}
	c.assertPodGone(podID, ctrIDs)

	// The other pod still runs, with its own shim.
	if st := c.podStatus(bystanderID); st.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("the other pod is %v", st.State)
	}
	if res := c.execSync(bystanderCtr, 20, "echo", "ok"); string(res.Stdout) != "ok\n" {
		t.Errorf("exec in the other pod: %q", res.Stdout)
	}
	c.removePod(bystanderID)
	assertNoLeaks(t, "after removing the pods")
	if shims := env.Containerd.Shims(); len(shims) > 0 {
		t.Errorf("shims still run: %v", shims)
	}
}

// TestCNIPluginFaults runs crishim on a CNI plugin directory whose bridge
// plugin the test makes fail or vanish. A RunPodSandbox it breaks fails
// with an error naming the cause and leaves nothing: no pod, netns, IP,
// veth, mount, containerd object, journal entry or file of crishim's; the
// same request succeeds once the plugin works. A StopPodSandbox or
// RemovePodSandbox it breaks reports the error and keeps the pod, each
// later call tries the teardown again, and the first one after the plugin
// works releases the IP and the rest.
func TestCNIPluginFaults(t *testing.T) {
	c := newClient(t)
	c.trackConns()
	crishim, _ := env.Crishim()
	plugins, err := testenv.WrapPlugins(filepath.Join(env.Dir, "cni-bin-"+randomSuffix()), "bridge")
	if err != nil {
		t.Fatal(err)
	}
	crishim.SetExtraArgs("--cni-bin-dir", plugins.Dir)
	if err := crishim.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		crishim.SetExtraArgs()
		if err := crishim.Restart(); err != nil {
			t.Errorf("restart crishim on the real plugin directory: %v", err)
		}
	})
	c.reconnect()
	assertNoLeaks(t, "before the test")

	// inject breaks the plugin until the (sub)test ends, or heal is called.
	inject := func(t *testing.T, fault func() error) {
		t.Helper()
		if err := fault(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = plugins.Heal() })
	}
	heal := func(t *testing.T) {
		t.Helper()
		if err := plugins.Heal(); err != nil {
			t.Fatal(err)
		}
	}
	countCalls := func(t *testing.T, call string) int {
		t.Helper()
		calls, err := plugins.Calls()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range calls {
			if c == call {
				n++
			}
		}
		return n
	}
	// runFailing runs a pod the broken plugin must make fail, and checks
	// that the failure left nothing, then that the retry works. With
	// undoFails the plugin's DEL fails too, so the address ADD took cannot
	// go back at once: it must once the plugin works, without a restart.
	runFailing := func(t *testing.T, want string, code codes.Code, undoFails bool) {
		pod := podConfig(t, "cnifail")
		_, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: pod})
		if err == nil {
			t.Fatal("RunPodSandbox succeeded with a broken CNI plugin")
		}
		t.Logf("RunPodSandbox: %v", err)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("RunPodSandbox error %q does not say %q", err, want)
		}
		if code != codes.OK {
			wantCode(t, "RunPodSandbox", err, code)
		}
		list, lerr := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{})
		if lerr != nil {
			t.Fatal(lerr)
		}
		for _, p := range list.Items {
			if p.Metadata.Name == pod.Metadata.Name {
				t.Errorf("pod %s listed (%v) after its RunPodSandbox failed", p.Id[:12], p.State)
			}
		}
		for _, dir := range []string{filepath.Join(env.CrishimRoot, "sandboxes"), filepath.Join(env.CrishimState, "sandboxes")} {
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("%d sandbox directories left in %s", len(entries), dir)
			}
		}
		if undoFails {
			if ips, err := env.Network.IPAllocations(); err != nil || len(ips) == 0 {
				t.Fatalf("no address held after an ADD that failed half way and a failing DEL (%v, %v): the fault did not hold", ips, err)
			}
			heal(t)
			healed := time.Now()
			if !waitNoLeaks(t, time.Minute, "by the failed RunPodSandbox once the plugin works") {
				t.FailNow()
			}
			t.Logf("the failed RunPodSandbox's address was released %s after the plugin worked again", time.Since(healed).Round(time.Millisecond))
		} else {
			assertNoLeaks(t, "by the failed RunPodSandbox")
			heal(t)
		}
		podID := c.runPod(pod)
		if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
			t.Errorf("retried pod: %v ip %q", st.State, st.GetNetwork().GetIp())
		}
		c.removePod(podID)
		c.assertPodGone(podID, nil)
		assertNoLeaks(t, "after removing the retried pod")
	}

	t.Run("RunPodSandbox/missing", func(t *testing.T) {
		inject(t, plugins.Hide)
		runFailing(t, "CNI plugins bridge not found", codes.FailedPrecondition, false)
	})
	t.Run("RunPodSandbox/failing", func(t *testing.T) {
		inject(t, func() error { return plugins.Fail("ADD") })
		runFailing(t, "injected bridge failure", codes.OK, false)
	})
	t.Run("RunPodSandbox/failing-undo-too", func(t *testing.T) {
		inject(t, func() error { return plugins.Fail("ADD") })
		inject(t, func() error { return plugins.Fail("DEL") })
		runFailing(t, "injected bridge failure", codes.OK, true)
	})

	// stopFailing runs a pod with a container, breaks the plugin and checks
	// that the teardown is reported, kept and retried by every stop or
	// removal until the plugin works; removeOnly heals and goes straight to
	// RemovePodSandbox, as the kubelet's garbage collector may.
	stopFailing := func(t *testing.T, fault func() error, want string, removeOnly bool) {
		pod := podConfig(t, "cnistop")
		resp, err := c.rt.RunPodSandbox(rpcCtx(t), &runtime.RunPodSandboxRequest{Config: pod})
		if err != nil {
			t.Fatal(err)
		}
		podID := resp.PodSandboxId
		t.Cleanup(func() { c.removePod(podID) })
		ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
		ip := c.podStatus(podID).GetNetwork().GetIp()
		inject(t, fault)

		del := "DEL " + podID
		calls := countCalls(t, del)
		for i, rpc := range []string{"StopPodSandbox", "StopPodSandbox", "RemovePodSandbox"} {
			var err error
			if rpc == "StopPodSandbox" {
				_, err = c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID})
			} else {
				_, err = c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID})
			}
			if err == nil {
				t.Fatalf("%s #%d succeeded while the CNI plugin is broken", rpc, i+1)
			}
			if i == 0 {
				t.Logf("%s: %v", rpc, err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s #%d error %q does not say %q", rpc, i+1, err, want)
			}
			if ips, err := env.Network.IPAllocations(); err != nil || !contains(ips, ip) {
				t.Fatalf("IP %s gone after a failed teardown (%v, %v): the fault did not hold", ip, ips, err)
			}
			if want == "injected" {
				// The plugin ran again: the teardown was retried, not skipped.
				if n := countCalls(t, del); n <= calls {
					t.Errorf("%s #%d did not call the plugin's DEL again (%d calls)", rpc, i+1, n)
				}
				calls = countCalls(t, del)
			}
			// The pod stays, to be torn down by the next call.
			if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
				t.Errorf("pod after %s #%d failed: %v, want NOTREADY", rpc, i+1, st.State)
			}
			// RemovePodSandbox removes the containers before the pod.
			if rpc == "StopPodSandbox" {
				if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("container after %s #%d failed: %v, want EXITED", rpc, i+1, st.State)
				}
			}
		}

		heal(t)
		if !removeOnly {
			if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatalf("StopPodSandbox once the plugin works: %v", err)
			}
			if ips, err := env.Network.IPAllocations(); err != nil || contains(ips, ip) {
				t.Errorf("IP %s still allocated after StopPodSandbox succeeded (%v, %v)", ip, ips, err)
			}
			if ns := netnsFiles(); len(ns) > 0 {
				t.Errorf("netns left after StopPodSandbox succeeded: %v", ns)
			}
		}
		if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox once the plugin works: %v", err)
		}
		c.assertPodGone(podID, []string{ctrID})
		assertNoLeaks(t, "after removing the pod")
	}

	t.Run("StopPodSandbox/failing", func(t *testing.T) {
		stopFailing(t, func() error { return plugins.Fail("DEL") }, "injected", false)
	})
	t.Run("StopPodSandbox/missing", func(t *testing.T) {
		stopFailing(t, plugins.Hide, `"bridge"`, true)
	})
}
