//go:build linux

package integration

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// recoverySteps are the fault points of a pod's recovery, in order.
var recoverySteps = []string{
	"sandbox.recover.info",
	"sandbox.recover.decode",
	"sandbox.recover.task",
	"sandbox.recover.taskStatus",
	"sandbox.recover.netns",
}

// TestRecoveryKeepsUnrecoveredPods restarts crishim with one step of a
// pod's recovery failing. The pod must stay listed, NOTREADY, with the
// failure in its verbose status and the unknown-pods metric, its
// container listed, and its network namespace, address, veth, port
// mappings and pause all kept; StopPodSandbox and RemovePodSandbox must
// then release every one of them. A fault that heals by itself (error:1)
// must be healed by the re-check: the pod is READY again, same address.
func TestRecoveryKeepsUnrecoveredPods(t *testing.T) {
	for _, step := range recoverySteps {
		t.Run(step, func(t *testing.T) {
			t.Run("persistent", func(t *testing.T) { testRecoveryFault(t, step, false) })
			t.Run("transient", func(t *testing.T) { testRecoveryFault(t, step, true) })
		})
	}
}

func testRecoveryFault(t *testing.T, step string, transient bool) {
	c := newClient(t)
	c.trackConns()
	assertNoLeaks(t, "before the test")
	if t.Failed() {
		t.FailNow()
	}
	hostPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "unrecovered")
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: int32(hostPort)}}
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
	podIP := c.podStatus(podID).GetNetwork().GetIp()
	before := networkTraces(t)
	if len(before.netns) != 1 || !contains(before.ips, podIP) || len(before.veths) == 0 || len(before.nat) == 0 {
		t.Fatalf("the running pod's network is not all there before the restart: %+v (ip %s)", before, podIP)
	}

	metricsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	crishim, _ := env.Crishim()
	crishim.SetExtraArgs("--metrics-address", fmt.Sprintf(":%d", metricsPort))
	action := "error"
	if transient {
		action = "error:1"
	}
	c.armFaultPoints(step + "=" + action)
	// Runs before the disarm's restart, which then drops the flag.
	t.Cleanup(func() { crishim.SetExtraArgs() })
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)

	if transient {
		// The re-check heals the pod; until then it is NOTREADY.
		st := c.waitPodState(podID, runtime.PodSandboxState_SANDBOX_READY, time.Minute)
		if st.GetNetwork().GetIp() != podIP {
			t.Errorf("healed pod has IP %q, had %s", st.GetNetwork().GetIp(), podIP)
		}
		if info := c.podInfo(podID); !strings.Contains(info, `"state":"ready"`) || strings.Contains(info, "recoveryError") {
			t.Errorf("healed pod's verbose info: %s", info)
		}
		if !strings.Contains(httpGet(t, metricsURL), "crishim_sandbox_unknown 0") {
			t.Error("crishim_sandbox_unknown is not 0 once the pod is healed")
		}
		// Healed, not merely never broken: the fault did hit.
		for _, msg := range []string{"pod sandbox not fully recovered", "completed the recovery of a pod sandbox"} {
			if !logHas(t, crishim.LogPath(), msg, podID) {
				t.Errorf("crishim's log has no %q for pod %s", msg, podID[:12])
			}
		}
	} else {
		if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %v after a restart that could not recover it, want NOTREADY", st.State)
		}
		info := c.podInfo(podID)
		if !strings.Contains(info, `"state":"unknown"`) || !strings.Contains(info, step+": fault injected") {
			t.Errorf("verbose info of the unrecovered pod does not say why: %s", info)
		}
		if !strings.Contains(httpGet(t, metricsURL), "crishim_sandbox_unknown 1") {
			t.Error("crishim_sandbox_unknown is not 1 with one pod unrecovered")
		}
	}
	if !slices.ContainsFunc(c.listPods(), func(p *runtime.PodSandbox) bool { return p.Id == podID }) {
		t.Fatalf("pod %s not listed after the restart", podID[:12])
	}
	if !slices.ContainsFunc(c.listContainers(), func(ct *runtime.Container) bool { return ct.Id == ctrID && ct.PodSandboxId == podID }) {
		t.Errorf("container %s of the pod not listed after the restart", ctrID[:12])
	}
	after := networkTraces(t)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the pod's network changed across the restart:\n  before %+v\n  after  %+v", before, after)
	}
	if !pauseTask(t, podID, 0) {
		t.Error("the pod's pause task is gone after the restart")
	}

	if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	c.assertPodGone(podID, []string{ctrID})
	assertNoLeaks(t, "after RemovePodSandbox")
	if !strings.Contains(httpGet(t, metricsURL), "crishim_sandbox_unknown 0") {
		t.Error("crishim_sandbox_unknown is not 0 once the pod is removed")
	}
	// A shim exits once containerd has deleted its last task.
	for deadline := time.Now().Add(30 * time.Second); len(env.Containerd.Shims()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("shims still run 30s after RemovePodSandbox: %v", env.Containerd.Shims())
		}
	}
}

// logHas reports whether a line of the log at path has msg and names id.
func logHas(t *testing.T, path, msg, id string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, msg) && strings.Contains(line, id) {
			return true
		}
	}
	return false
}

// netTraces is what a pod's network leaves on the host.
type netTraces struct {
	netns, ips, veths, nat []string
}

func networkTraces(t *testing.T) netTraces {
	t.Helper()
	var tr netTraces
	var err error
	tr.netns = netnsFiles()
	if tr.ips, err = env.Network.IPAllocations(); err != nil {
		t.Fatal(err)
	}
	if tr.veths, err = env.Network.BridgePorts(); err != nil {
		t.Fatal(err)
	}
	if tr.nat, err = env.Network.NATRules(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(tr.nat)
	return tr
}

// podInfo is the pod's verbose status info.
func (c *client) podInfo(id string) string {
	c.t.Helper()
	resp, err := c.rt.PodSandboxStatus(rpcCtx(c.t), &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		c.t.Fatalf("PodSandboxStatus %s: %v", id[:12], err)
	}
	return resp.GetInfo()["info"]
}

func (c *client) listPods() []*runtime.PodSandbox {
	c.t.Helper()
	resp, err := c.rt.ListPodSandbox(rpcCtx(c.t), &runtime.ListPodSandboxRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Items
}

func (c *client) listContainers() []*runtime.Container {
	c.t.Helper()
	resp, err := c.rt.ListContainers(rpcCtx(c.t), &runtime.ListContainersRequest{})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Containers
}
