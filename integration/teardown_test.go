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

// logNewerThan reports whether the log has a record stamped after t0.
func logNewerThan(t *testing.T, path string, t0 time.Time) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	recs := parseCRILog(t, data)
	return len(recs) > 0 && recs[len(recs)-1].Time.After(t0)
}
