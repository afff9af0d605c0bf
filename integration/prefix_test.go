//go:build linux

package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// prefixLen is as much of an ID as crictl prints and its users type.
const prefixLen = 12

func prefixOf(id string) string { return id[:prefixLen] }

// TestPodPrefixRemovesContainers is `crictl stopp <prefix>` then `crictl
// rmp <prefix>` on a pod with a running container: the container is
// stopped with the pod and removed with it, not left behind in
// ListContainers under the ID of a pod that is gone.
func TestPodPrefixRemovesContainers(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := rpcCtx(t)
	pod := podConfig(t, "prefixrmp")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))

	if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: prefixOf(podID)}); err != nil {
		t.Fatalf("StopPodSandbox %s: %v", prefixOf(podID), err)
	}
	if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("container is %v after StopPodSandbox of its pod by prefix, want EXITED", st.State)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: prefixOf(podID)}); err != nil {
		t.Fatalf("RemovePodSandbox %s: %v", prefixOf(podID), err)
	}
	_, err := c.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
	wantCode(t, "PodSandboxStatus of the removed pod", err, codes.NotFound)
	_, err = c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctrID})
	wantCode(t, "ContainerStatus of the removed pod's container", err, codes.NotFound)
	list, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range list.Containers {
		if ctr.Id == ctrID || ctr.PodSandboxId == podID {
			t.Errorf("container %s (%v) of the removed pod %s is still listed", ctr.Id, ctr.State, podID)
		}
	}
}

// idCase is one RPC that takes a pod or a container ID.
type idCase struct {
	name string
	// pod: the RPC takes a pod ID, else a container ID.
	pod bool
	// absentOK: the CRI has stop and remove succeed on what is not there.
	absentOK bool
	call     func(ctx context.Context, id string) error
	// target is the full ID the call acts on with a prefix; check then
	// looks at the effect.
	target func() string
	check  func(t *testing.T)
}

// listCase is a list RPC whose filter takes an ID; it returns the IDs listed.
type listCase struct {
	name string
	pod  bool
	list func(ctx context.Context, id string) ([]string, error)
	// check looks at what a filter with a prefix of the real ID listed.
	check func(t *testing.T, ids []string)
}

// TestIDPrefixEveryRPC calls every RPC that takes a pod or container ID
// (and every list filter that does) with a prefix of a real ID, with an
// ambiguous prefix and with a prefix of nothing. A unique prefix acts on
// the one object it names, exactly as its full ID would; an ambiguous one
// is InvalidArgument and acts on nothing; an unknown one is NotFound,
// except for stop and remove, which succeed on an absent object. A list
// filter never fails: one that names no single object lists nothing, as in
// containerd's CRI.
func TestIDPrefixEveryRPC(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := rpcCtx(t)

	pod := podConfig(t, "prefixrpc")
	podID := c.runPod(pod)
	// A running container that also serves HTTP (busybox httpd goes to the
	// background) for the port forward, and stops at once on SIGTERM.
	serveCmd := []string{"sh", "-c", `echo prefixed > /www/index.html && httpd -p 8080 -h /www && trap "exit 0" TERM; while true; do sleep 0.1; done`}
	mainCfg := containerConfig("main", env.BusyboxImage, serveCmd...)
	// A pid namespace of its own, for a container to join by target_id.
	mainCfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
	}
	ctrID := c.startContainer(podID, pod, mainCfg)

	// Among 17 IDs two share their first hex digit: ambiguous prefixes of
	// pods and of containers.
	const crowd = 17
	var crowdPods, crowdCtrs []string
	for i := range crowd {
		crowdCtrs = append(crowdCtrs, c.createContainer(podID, pod, containerConfig(fmt.Sprintf("crowd%d", i), env.BusyboxImage, "true")))
	}
	podIDs := make([]string, crowd)
	errs := parallel(crowd, 4, func(i int) error {
		cfg := podConfig(t, fmt.Sprintf("prefixcrowd%d", i))
		cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
		}
		resp, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err == nil {
			podIDs[i] = resp.PodSandboxId
		}
		return err
	})
	for i, id := range podIDs {
		if id != "" {
			crowdPods = append(crowdPods, id)
			t.Cleanup(func() { c.removePod(id) })
		}
		if errs[i] != nil {
			t.Fatalf("RunPodSandbox of a crowd pod: %v", errs[i])
		}
	}
	ambiguousPod, ambiguousCtr := sharedPrefix(t, crowdPods), sharedPrefix(t, crowdCtrs)
	// IDs are hex: this names nothing, wherever other tests' pods are.
	const unknown = "nothex000000"

	// podContainers are the IDs of the pod's containers, listed by full ID.
	podContainers := func(t *testing.T) []string {
		list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ctr := range list.Containers {
			ids = append(ids, ctr.Id)
		}
		return ids
	}

	var created string // made by CreateContainer with a pod prefix
	full := func(id string) func() string { return func() string { return id } }
	cases := []idCase{
		{name: "PodSandboxStatus", pod: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id})
				if err == nil {
					if resp.Status.Id != podID {
						return fmt.Errorf("status of pod %s", resp.Status.Id)
					}
					if !slices.ContainsFunc(resp.ContainersStatuses, func(s *runtime.ContainerStatus) bool { return s.Id == ctrID }) {
						return fmt.Errorf("container statuses lack %s", ctrID)
					}
				}
				return err
			}},
		{name: "PodSandboxStats", pod: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: id})
				if err == nil && resp.Stats.GetAttributes().GetId() != podID {
					return fmt.Errorf("stats of pod %s", resp.Stats.GetAttributes().GetId())
				}
				return err
			}},
		{name: "UpdatePodSandboxResources", pod: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: id,
					Resources: &runtime.LinuxContainerResources{CpuShares: 1024}})
				return err
			}},
		{name: "PortForward", pod: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.PortForward(ctx, &runtime.PortForwardRequest{PodSandboxId: id, Port: []int32{8080}})
				if err != nil {
					return err
				}
				reply, msg, err := portForward(resp.Url, 8080, "GET / HTTP/1.0\r\n\r\n")
				if err != nil || !strings.Contains(reply, "prefixed") {
					return fmt.Errorf("port forward into the pod: reply %q, error stream %q, %v", truncate(reply, 200), msg, err)
				}
				return nil
			}},
		{name: "CreateContainer", pod: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: id,
					Config: containerConfig("byprefix-"+randomSuffix(), env.BusyboxImage, idleCmd...), SandboxConfig: pod})
				if err == nil {
					created = resp.ContainerId
					t.Cleanup(func() {
						ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
						defer cancel()
						if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: created}); err != nil {
							t.Errorf("cleanup: RemoveContainer %s: %v", created, err)
						}
					})
				}
				return err
			},
			check: func(t *testing.T) {
				list, err := c.rt.ListContainers(rpcCtx(t), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: created}})
				if err != nil || len(list.Containers) != 1 || list.Containers[0].PodSandboxId != podID {
					t.Errorf("the container created with a pod prefix is listed as %v (%v), want in pod %s", list.GetContainers(), err, podID)
				}
			}},
		{name: "StartContainer", target: func() string { return created },
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
				return err
			},
			check: func(t *testing.T) {
				if st := c.containerStatus(created); st.State != runtime.ContainerState_CONTAINER_RUNNING {
					t.Errorf("container started by prefix is %v", st.State)
				}
			}},
		{name: "ContainerStatus", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
				if err == nil && resp.Status.Id != ctrID {
					return fmt.Errorf("status of container %s", resp.Status.Id)
				}
				return err
			}},
		{name: "ContainerStats", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: id})
				if err == nil && resp.Stats.GetAttributes().GetId() != ctrID {
					return fmt.Errorf("stats of container %s", resp.Stats.GetAttributes().GetId())
				}
				return err
			}},
		{name: "UpdateContainerResources", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: id,
					Linux: &runtime.LinuxContainerResources{CpuShares: 512}})
				return err
			},
			check: func(t *testing.T) {
				out := c.execSync(ctrID, 10, "cat", "/sys/fs/cgroup/cpu/cpu.shares")
				if got := strings.TrimSpace(string(out.Stdout)); got != "512" {
					t.Errorf("cpu.shares after an update by prefix: %q, want 512", got)
				}
			}},
		{name: "ReopenContainerLog", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.ReopenContainerLog(ctx, &runtime.ReopenContainerLogRequest{ContainerId: id})
				return err
			}},
		{name: "ExecSync", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/www/index.html"}, Timeout: 10})
				if err == nil && string(resp.Stdout) != "prefixed\n" {
					return fmt.Errorf("exec output %q, exit %d", resp.Stdout, resp.ExitCode)
				}
				return err
			}},
		{name: "Exec", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: id, Cmd: []string{"cat", "/www/index.html"}, Stdout: true})
				if err != nil {
					return err
				}
				res, err := runSession(resp.Url, session{stdout: true})
				if err != nil || res.stdout != "prefixed\n" {
					return fmt.Errorf("exec session: output %q, status %+v, %v", res.stdout, res.status, err)
				}
				return nil
			}},
		{name: "Attach", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				resp, err := c.rt.Attach(ctx, &runtime.AttachRequest{ContainerId: id, Stdout: true})
				if err == nil && !strings.HasPrefix(resp.Url, "http://127.0.0.1:") {
					return fmt.Errorf("attach URL %q", resp.Url)
				}
				return err
			}},
		{name: "CreateContainer target_id", target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				cfg := containerConfig("sharer-"+randomSuffix(), env.BusyboxImage, idleCmd...)
				cfg.Linux.SecurityContext = &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: id},
				}
				resp, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
				if err != nil {
					return err
				}
				sharer := resp.ContainerId
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if _, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: sharer}); err != nil {
						t.Errorf("cleanup: RemoveContainer %s: %v", sharer, err)
					}
				})
				if _, err := c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: sharer}); err != nil {
					return err
				}
				// PID 1 of the shared namespace is the main container's shell.
				out, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: sharer, Cmd: []string{"cat", "/proc/1/cmdline"}, Timeout: 10})
				if err != nil || !strings.Contains(string(out.GetStdout()), "prefixed") {
					return fmt.Errorf("the container sharing the pid namespace of %s sees PID 1 as %q (%v)", id, out.GetStdout(), err)
				}
				return nil
			}},
		{name: "StopContainer", absentOK: true, target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 10})
				return err
			},
			check: func(t *testing.T) {
				if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("container stopped by prefix is %v", st.State)
				}
			}},
		{name: "RemoveContainer", absentOK: true, target: full(ctrID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
				return err
			},
			check: func(t *testing.T) {
				_, err := c.rt.ContainerStatus(rpcCtx(t), &runtime.ContainerStatusRequest{ContainerId: ctrID})
				wantCode(t, "ContainerStatus of the container removed by prefix", err, codes.NotFound)
			}},
		{name: "StopPodSandbox", pod: true, absentOK: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id})
				return err
			},
			check: func(t *testing.T) {
				if st := c.podStatus(podID); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
					t.Errorf("pod stopped by prefix is %v", st.State)
				}
				if st := c.containerStatus(created); st.State != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("container of the pod stopped by prefix is %v", st.State)
				}
			}},
		{name: "RemovePodSandbox", pod: true, absentOK: true, target: full(podID),
			call: func(ctx context.Context, id string) error {
				_, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id})
				return err
			},
			check: func(t *testing.T) {
				_, err := c.rt.PodSandboxStatus(rpcCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: podID})
				wantCode(t, "PodSandboxStatus of the pod removed by prefix", err, codes.NotFound)
				if left := podContainers(t); len(left) != 0 {
					t.Errorf("containers of the pod removed by prefix are still listed: %v", left)
				}
			}},
	}

	wantIDs := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("listed %v, want %v", got, want)
		}
	}
	lists := []listCase{
		{name: "ListPodSandbox", pod: true,
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{Id: id}})
				var ids []string
				for _, p := range resp.GetItems() {
					ids = append(ids, p.Id)
				}
				return ids, err
			},
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, podID) }},
		{name: "ListPodSandboxStats", pod: true,
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{Id: id}})
				var ids []string
				for _, p := range resp.GetStats() {
					ids = append(ids, p.GetAttributes().GetId())
				}
				return ids, err
			},
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, podID) }},
		{name: "ListContainers by pod", pod: true,
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: id}})
				var ids []string
				for _, ctr := range resp.GetContainers() {
					ids = append(ids, ctr.Id)
				}
				return ids, err
			},
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, append([]string{ctrID}, crowdCtrs...)...) }},
		{name: "ListContainers by id",
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: id}})
				var ids []string
				for _, ctr := range resp.GetContainers() {
					ids = append(ids, ctr.Id)
				}
				return ids, err
			},
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, ctrID) }},
		{name: "ListContainerStats by pod", pod: true,
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: id}})
				var ids []string
				for _, s := range resp.GetStats() {
					ids = append(ids, s.GetAttributes().GetId())
				}
				return ids, err
			},
			// Only running containers have stats: the crowd never started.
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, ctrID) }},
		{name: "ListContainerStats by id",
			list: func(ctx context.Context, id string) ([]string, error) {
				resp, err := c.rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{Id: id}})
				var ids []string
				for _, s := range resp.GetStats() {
					ids = append(ids, s.GetAttributes().GetId())
				}
				return ids, err
			},
			check: func(t *testing.T, ids []string) { wantIDs(t, ids, ctrID) }},
	}

	// (The cases run in sequence, not as subtests: the client's helpers
	// fail the test they were made for.)

	// Lists first, while the pod holds just its main container and the crowd.
	for _, lc := range lists {
		full, ambiguous := ctrID, ambiguousCtr
		if lc.pod {
			full, ambiguous = podID, ambiguousPod
		}
		ids, err := lc.list(ctx, prefixOf(full))
		if err != nil {
			t.Errorf("%s: filter by prefix %s: %v", lc.name, prefixOf(full), err)
		} else {
			lc.check(t, ids)
		}
		for _, id := range []string{ambiguous, unknown} {
			ids, err := lc.list(ctx, id)
			if err != nil || len(ids) != 0 {
				t.Errorf("%s: filter by %q, which names no one object: %v, %v; want nothing listed", lc.name, id, ids, err)
			}
		}
	}

	// Then ambiguous and unknown prefixes, which must change nothing.
	for _, tc := range cases {
		id := ambiguousCtr
		if tc.pod {
			id = ambiguousPod
		}
		wantCode(t, tc.name+" with ambiguous prefix "+id, tc.call(ctx, id), codes.InvalidArgument)
		err := tc.call(ctx, unknown)
		if !tc.absentOK {
			wantCode(t, tc.name+" with unknown prefix", err, codes.NotFound)
		} else if err != nil {
			t.Errorf("%s of an unknown prefix: %v, want success", tc.name, err)
		}
	}
	for _, id := range crowdPods {
		if st := c.podStatus(id); st.State != runtime.PodSandboxState_SANDBOX_READY {
			t.Errorf("crowd pod %s is %v after the calls with an ambiguous prefix", id, st.State)
		}
	}
	wantIDs(t, podContainers(t), append([]string{ctrID}, crowdCtrs...)...)
	if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("main container is %v after the calls with ambiguous and unknown prefixes", st.State)
	}

	// Last, each RPC with a unique prefix, in an order that ends with the
	// pod removed.
	for _, tc := range cases {
		id := prefixOf(tc.target())
		if err := tc.call(ctx, id); err != nil {
			t.Fatalf("%s with prefix %s: %v (%v)", tc.name, id, err, status.Code(err))
		}
		if tc.check != nil {
			tc.check(t)
		}
	}
}

// sharedPrefix returns a prefix that at least two of ids start with.
func sharedPrefix(t *testing.T, ids []string) string {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id[:1]] {
			return id[:1]
		}
		seen[id[:1]] = true
	}
	t.Fatalf("no two of %d IDs share a first character", len(ids))
	return ""
}
