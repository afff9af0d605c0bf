//go:build linux

package integration

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The tests in this file are not parallel: Go runs them before any parallel
// test starts, so they have crishim to themselves.

// TestTeardownLeavesNothing runs a pod with a hostPort and a container,
// checks that its traces exist, removes it, and checks they are all gone:
// netns and shm mounts, IP allocation, nat rules, containerd containers,
// tasks and snapshots.
func TestTeardownLeavesNothing(t *testing.T) {
	c := newClient(t)
	e := env
	if leaks, err := e.Leaks(); err != nil {
		t.Fatal(err)
	} else if len(leaks) > 0 {
		t.Fatalf("left over before the test started (an earlier test leaked):\n  %s", strings.Join(leaks, "\n  "))
	}

	hostPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "teardown")
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: int32(hostPort)}}
	podID := c.runPod(pod)
	c.startContainer(podID, pod, containerConfig("idle", e.BusyboxImage, idleCmd...))

	// Each trace must exist now, or its absence later would prove nothing.
	podIP := c.podStatus(podID).GetNetwork().GetIp()
	if ips, err := e.Network.IPAllocations(); err != nil || !contains(ips, podIP) {
		t.Errorf("host-local allocations %v (%v) lack the pod IP %s", ips, err, podIP)
	}
	if rules, err := e.Network.NATRules(); err != nil || len(rules) == 0 {
		t.Errorf("no nat rule names network %s while a hostPort pod runs (%v)", e.Network.Name, err)
	}
	if ports, err := e.Network.BridgePorts(); err != nil || len(ports) == 0 {
		t.Errorf("no veth on bridge %s while a pod runs (%v)", e.Network.Bridge, err)
	}
	if mounts, err := testenv.MountsUnder(e.CrishimState); err != nil || len(mounts) == 0 {
		t.Errorf("no mount under crishim's state dir while a pod runs (%v); where is its netns?", err)
	}
	if leaks, err := e.Leaks(); err != nil || len(leaks) == 0 {
		t.Errorf("Leaks() finds nothing while a pod runs (%v); the check is blind", err)
	}

	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	// A stopped pod has already given its network back.
	if ips, err := e.Network.IPAllocations(); err != nil || contains(ips, podIP) {
		t.Errorf("host-local still holds %s after StopPodSandbox (%v, %v)", podIP, ips, err)
	}
	if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	leaks, err := e.Leaks()
	if err != nil {
		t.Fatal(err)
	}
	if len(leaks) > 0 {
		t.Errorf("left behind after RemovePodSandbox:\n  %s", strings.Join(leaks, "\n  "))
	}
	// Nothing routes to the old pod IP through a stale veth.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(podIP, "80"), 500*time.Millisecond); err == nil {
		conn.Close()
		t.Errorf("something still answers on the removed pod's IP %s", podIP)
	}
}

// TestRestartKeepsPods restarts crishim under a running pod: the pod and
// its container are found again, exec works, the log keeps filling, and an
// exit after the restart is recorded.
func TestRestartKeepsPods(t *testing.T) {
	c := newClient(t)
	pod := podConfig(t, "restart")
	podID := c.runPod(pod)
	cfg := containerConfig("ticker", env.BusyboxImage, "sh", "-c", `trap "exit 4" TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done`)
	ctrID := c.startContainer(podID, pod, cfg)
	before := c.podStatus(podID)

	crishim, _ := env.Crishim()
	if err := crishim.Restart(); err != nil {
		t.Fatalf("restart crishim: %v", err)
	}

	after := c.podStatus(podID)
	if after.State != runtime.PodSandboxState_SANDBOX_READY || after.GetNetwork().GetIp() != before.GetNetwork().GetIp() || after.CreatedAt != before.CreatedAt {
		t.Errorf("pod after restart: state %v ip %q created %d; before: %v %q %d", after.State, after.GetNetwork().GetIp(), after.CreatedAt, before.State, before.GetNetwork().GetIp(), before.CreatedAt)
	}
	st := c.containerStatus(ctrID)
	if st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after restart: %v, want RUNNING", st.State)
	}
	if res := c.execSync(ctrID, 10, "echo", "after-restart"); string(res.Stdout) != "after-restart\n" {
		t.Errorf("exec after restart: %q", res.Stdout)
	}

	// Output written after the restart still reaches the log.
	logPath := st.LogPath
	marker := time.Now()
	waitLog(t, logPath, 10*time.Second, func(l map[string][]string) bool {
		return len(l["stdout"]) > 0 && logNewerThan(t, logPath, marker)
	})

	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 10}); err != nil {
		t.Fatalf("StopContainer after restart: %v", err)
	}
	st = c.waitContainerState(ctrID, runtime.ContainerState_CONTAINER_EXITED, 10*time.Second)
	if st.ExitCode != 4 {
		t.Errorf("exit code recorded after restart: %d, want 4", st.ExitCode)
	}
}

// logNewerThan reports whether the log has a record stamped after t0.
func logNewerThan(t *testing.T, path string, t0 time.Time) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	recs := parseCRILog(t, data)
	return len(recs) > 0 && recs[len(recs)-1].Time.After(t0)
}
