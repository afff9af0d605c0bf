//go:build linux

package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

func TestVersionAndStatus(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	v, err := c.rt.Version(rpcCtx(t), &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "crishim" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" {
		t.Errorf("Version = %+v, want runtime crishim, API v1 and a version", v)
	}
	st, err := c.rt.Status(rpcCtx(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtime.RuntimeCondition{}
	for _, cond := range st.GetStatus().GetConditions() {
		conds[cond.Type] = cond
	}
	for _, want := range []string{runtime.RuntimeReady, runtime.NetworkReady} {
		if cond := conds[want]; cond == nil || !cond.Status {
			t.Errorf("Status condition %s = %+v, want true", want, cond)
		}
	}
}

// TestPodLifecycle walks one pod and one container through every state and
// repeats each Stop and Remove, which must succeed again.
func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "lifecycle")
	podID := c.runPod(pod)

	ps := c.podStatus(podID)
	if ps.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state %v, want READY", ps.State)
	}
	if ps.Id != podID || ps.Metadata.GetName() != pod.Metadata.Name || ps.Metadata.GetUid() != pod.Metadata.Uid {
		t.Errorf("pod status id %q metadata %+v, want %s %+v", ps.Id, ps.Metadata, podID, pod.Metadata)
	}
	ip := net.ParseIP(ps.GetNetwork().GetIp())
	if ip == nil || !env.Network.Subnet.Contains(ip) {
		t.Errorf("pod IP %q is not in the test subnet %s", ps.GetNetwork().GetIp(), env.Network.Subnet)
	}
	list, err := c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Id != podID || list.Items[0].State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("ListPodSandbox(id) = %v, want the ready pod", list.Items)
	}

	// The shell exits 3 on SIGTERM so that the recorded exit code is
	// the container's own, not a signal's.
	cfg := containerConfig("main", env.BusyboxImage, "sh", "-c", `trap "echo stopping; exit 3" TERM; echo ready; echo warn >&2; while true; do sleep 0.1; done`)
	ctrID := c.createContainer(podID, pod, cfg)
	st := c.containerStatus(ctrID)
	if st.State != runtime.ContainerState_CONTAINER_CREATED {
		t.Errorf("state after create %v, want CREATED", st.State)
	}
	if _, err := c.rt.StartContainer(rpcCtx(t), &runtime.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	st = c.waitContainerState(ctrID, runtime.ContainerState_CONTAINER_RUNNING, 10*time.Second)
	if st.StartedAt == 0 || st.CreatedAt == 0 || st.StartedAt < st.CreatedAt {
		t.Errorf("created %d started %d, want both set and in order", st.CreatedAt, st.StartedAt)
	}
	if st.Metadata.GetName() != "main" || st.GetImage().GetImage() == "" || st.ImageRef == "" {
		t.Errorf("status metadata %v image %v image_ref %q, want name main and the image", st.Metadata, st.Image, st.ImageRef)
	}
	logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)
	if st.LogPath != logPath {
		t.Errorf("status log path %q, want %q", st.LogPath, logPath)
	}
	ctrs, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs.Containers) != 1 || ctrs.Containers[0].Id != ctrID || ctrs.Containers[0].State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ListContainers(pod) = %v, want the running container", ctrs.Containers)
	}

	waitLog(t, logPath, 10*time.Second, func(l map[string][]string) bool {
		return contains(l["stdout"], "ready") && contains(l["stderr"], "warn")
	})

	// Exec sees the pod's hostname and returns output and exit code.
	res := c.execSync(ctrID, 10, "sh", "-c", "hostname; echo to-stderr >&2; exit 7")
	if res.ExitCode != 7 || string(res.Stdout) != pod.Hostname+"\n" || string(res.Stderr) != "to-stderr\n" {
		t.Errorf("ExecSync = exit %d stdout %q stderr %q, want 7, %q, %q", res.ExitCode, res.Stdout, res.Stderr, pod.Hostname+"\n", "to-stderr\n")
	}

	stopStart := time.Now()
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 30}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if d := time.Since(stopStart); d > 10*time.Second {
		t.Errorf("StopContainer took %s for a container that exits on SIGTERM", d)
	}
	st = c.waitContainerState(ctrID, runtime.ContainerState_CONTAINER_EXITED, 10*time.Second)
	if st.ExitCode != 3 || st.FinishedAt < st.StartedAt || st.Reason != "Error" {
		t.Errorf("exited status: code %d reason %q finished %d started %d, want code 3, reason Error", st.ExitCode, st.Reason, st.FinishedAt, st.StartedAt)
	}
	waitLog(t, logPath, 10*time.Second, func(l map[string][]string) bool { return contains(l["stdout"], "stopping") })
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 30}); err != nil {
		t.Errorf("second StopContainer: %v", err)
	}
	if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	_, err = c.rt.ContainerStatus(rpcCtx(t), &runtime.ContainerStatusRequest{ContainerId: ctrID})
	wantCode(t, "ContainerStatus of a removed container", err, codes.NotFound)
	if _, err := c.rt.RemoveContainer(rpcCtx(t), &runtime.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Errorf("second RemoveContainer: %v", err)
	}
	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID}); err != nil {
		t.Errorf("StopContainer of a removed container: %v", err)
	}

	for i := 0; i < 2; i++ {
		if _, err := c.rt.StopPodSandbox(rpcCtx(t), &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i+1, err)
		}
		if ps := c.podStatus(podID); ps.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod state after StopPodSandbox #%d: %v, want NOTREADY", i+1, ps.State)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := c.rt.RemovePodSandbox(rpcCtx(t), &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i+1, err)
		}
	}
	_, err = c.rt.PodSandboxStatus(rpcCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	wantCode(t, "PodSandboxStatus of a removed pod", err, codes.NotFound)
	list, err = c.rt.ListPodSandbox(rpcCtx(t), &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("ListPodSandbox still lists the removed pod: %v", list.Items)
	}
}

// httpdCmd serves a page with the given content on port from /www.
func httpdCmd(port int, content string) []string {
	return []string{"sh", "-c", fmt.Sprintf(`echo %s > /www/index.html && exec httpd -f -p %d -h /www`, content, port)}
}

// TestContainersShareNetwork is the pause container's reason to exist: two
// containers of one pod talk over the pod's localhost.
func TestContainersShareNetwork(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "sharednet")
	podID := c.runPod(pod)

	page := "shared-" + randomSuffix()
	c.startContainer(podID, pod, containerConfig("server", env.BusyboxImage, httpdCmd(8080, page)...))
	client := c.startContainer(podID, pod, containerConfig("client", env.BusyboxImage, idleCmd...))

	deadline := time.Now().Add(15 * time.Second)
	for {
		res := c.execSync(client, 5, "wget", "-qO-", "http://127.0.0.1:8080/index.html")
		if res.ExitCode == 0 && strings.TrimSpace(string(res.Stdout)) == page {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client container cannot reach the server over the pod's localhost: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Same network namespace: both see the pod IP on their interface.
	podIP := c.podStatus(podID).GetNetwork().GetIp()
	res := c.execSync(client, 5, "ip", "-o", "-4", "addr", "show")
	if !strings.Contains(string(res.Stdout), podIP+"/") {
		t.Errorf("client container's interfaces %q lack the pod IP %s", res.Stdout, podIP)
	}
}

// TestHostPort reaches a pod from the host through a hostPort mapping.
func TestHostPort(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	hostPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pod := podConfig(t, "hostport")
	pod.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 8080, HostPort: int32(hostPort)}}
	podID := c.runPod(pod)
	page := "hostport-" + randomSuffix()
	c.startContainer(podID, pod, containerConfig("server", env.BusyboxImage, httpdCmd(8080, page)...))

	podIP := c.podStatus(podID).GetNetwork().GetIp()
	hostIP, err := hostAddress()
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{
		fmt.Sprintf("http://%s:8080/index.html", podIP),          // the pod directly, over the bridge
		fmt.Sprintf("http://%s:%d/index.html", hostIP, hostPort), // the hostPort on the node's address
		fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort),  // the hostPort on localhost
	} {
		if err := waitHTTP(url, page, 15*time.Second); err != nil {
			t.Errorf("GET %s: %v", url, err)
		}
	}
}

// hostAddress is an IPv4 address of the node outside loopback and the test bridge.
func hostAddress() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 || iface.Name == env.Network.Bridge {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !env.Network.Subnet.Contains(ipn.IP) {
				return ipn.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("no IPv4 address on any interface but loopback")
}

func waitHTTP(url, want string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == want {
				return nil
			}
			err = fmt.Errorf("%s: %q", resp.Status, body)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
