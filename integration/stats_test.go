//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/namespaces"
	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/stats"
)

// busyCmd burns CPU and holds some memory until SIGTERM.
var busyCmd = []string{"sh", "-c", `trap "exit 0" TERM; x=$(head -c 4000000 /dev/zero | tr '\0' a); while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; done`}

// TestContainerAndPodStats checks that a container doing work shows CPU
// time, a CPU rate once sampled twice, memory, and its writable layer; and
// that its pod adds up its containers and reports its network.
func TestContainerAndPodStats(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "stats")
	podID := c.runPod(pod)
	cfg := containerConfig("busy", env.BusyboxImage, busyCmd...)
	cfg.Labels = map[string]string{"stats": "yes"}
	ctrID := c.startContainer(podID, pod, cfg)

	var cs *runtime.ContainerStats
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.rt.ContainerStats(rpcCtx(t), &runtime.ContainerStatsRequest{ContainerId: ctrID})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		cs = resp.Stats
		if cs.GetCpu().GetUsageNanoCores().GetValue() > 0 && cs.GetMemory().GetWorkingSetBytes().GetValue() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU rate or working set after a minute of work: %v", cs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if cs.GetAttributes().GetId() != ctrID || cs.GetAttributes().GetMetadata().GetName() != "busy" || cs.GetAttributes().GetLabels()["stats"] != "yes" {
		t.Errorf("attributes %v", cs.GetAttributes())
	}
	if cs.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || cs.GetCpu().GetTimestamp() == 0 {
		t.Errorf("cpu %v", cs.GetCpu())
	}
	mem := cs.GetMemory()
	if mem.GetUsageBytes().GetValue() < mem.GetWorkingSetBytes().GetValue() || mem.GetRssBytes().GetValue() == 0 || mem.GetTimestamp() == 0 {
		t.Errorf("memory %v", mem)
	}
	if wl := cs.GetWritableLayer(); wl == nil || wl.GetFsId().GetMountpoint() == "" || wl.GetUsedBytes() == nil {
		t.Errorf("writable layer %v", wl)
	}

	// Filters: by label and pod, and a mismatch.
	list, err := c.rt.ListContainerStats(rpcCtx(t), &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID, LabelSelector: map[string]string{"stats": "yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Stats) != 1 || list.Stats[0].GetAttributes().GetId() != ctrID {
		t.Errorf("filtered stats %v, want only %s", list.Stats, ctrID)
	}
	list, err = c.rt.ListContainerStats(rpcCtx(t), &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{PodSandboxId: podID, LabelSelector: map[string]string{"stats": "no"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Stats) != 0 {
		t.Errorf("label mismatch still listed %d stats", len(list.Stats))
	}

	// Pod traffic: a connection attempt to the bridge's gateway (.1 of
	// the pod's subnet) sends packets out of eth0.
	ip := c.podStatus(podID).GetNetwork().GetIp()
	gw := ip[:strings.LastIndex(ip, ".")] + ".1"
	c.execSync(ctrID, 10, "sh", "-c", "wget -q -T 2 -O /dev/null http://"+gw+":9/ || true")
	resp, err := c.rt.PodSandboxStats(rpcCtx(t), &runtime.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	ps := resp.Stats
	if ps.GetAttributes().GetId() != podID || ps.GetAttributes().GetMetadata().GetUid() != pod.Metadata.Uid {
		t.Errorf("pod attributes %v", ps.GetAttributes())
	}
	lin := ps.GetLinux()
	if len(lin.GetContainers()) != 1 || lin.GetContainers()[0].GetAttributes().GetId() != ctrID {
		t.Errorf("pod containers %v", lin.GetContainers())
	}
	if lin.GetCpu().GetUsageCoreNanoSeconds().GetValue() < lin.GetContainers()[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() {
		t.Errorf("pod CPU %v below its container's", lin.GetCpu())
	}
	if lin.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("pod memory %v", lin.GetMemory())
	}
	// pause, sh and the sub-shells of the busy loop
	if lin.GetProcess().GetProcessCount().GetValue() < 2 {
		t.Errorf("pod process count %v", lin.GetProcess())
	}
	eth0 := lin.GetNetwork().GetDefaultInterface()
	if eth0.GetName() != "eth0" || eth0.GetTxBytes().GetValue() == 0 {
		t.Errorf("pod network %v, want eth0 with traffic", lin.GetNetwork())
	}

	all, err := c.rt.ListPodSandboxStats(rpcCtx(t), &runtime.ListPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{Id: podID}})
	if err != nil || len(all.Stats) != 1 {
		t.Fatalf("ListPodSandboxStats by id: %v, %d stats", err, len(all.GetStats()))
	}

	metrics, err := c.rt.ListPodSandboxMetrics(rpcCtx(t), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pm := range metrics.PodMetrics {
		for _, cm := range pm.GetContainerMetrics() {
			for _, m := range cm.GetMetrics() {
				found = found || (cm.ContainerId == ctrID && m.Name == "container_memory_working_set_bytes" && m.GetValue().GetValue() > 0)
			}
		}
	}
	if !found {
		t.Error("ListPodSandboxMetrics has no working set metric for the container")
	}
}

// TestUpdateContainerResources changes a running container's memory
// limit and reads it back from inside, and checks a created container's
// spec takes the update.
func TestUpdateContainerResources(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "update")
	podID := c.runPod(pod)
	cfg := containerConfig("idle", env.BusyboxImage, idleCmd...)
	cfg.Linux.Resources = &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	ctrID := c.startContainer(podID, pod, cfg)

	limit := func() int64 {
		res := c.execSync(ctrID, 10, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
		v, err := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64)
		if err != nil {
			t.Fatalf("memory.limit_in_bytes %q: %v", res.Stdout, err)
		}
		return v
	}
	if got := limit(); got != 64<<20 {
		t.Fatalf("initial limit %d, want %d", got, 64<<20)
	}
	_, err := c.rt.UpdateContainerResources(rpcCtx(t), &runtime.UpdateContainerResourcesRequest{
		ContainerId: ctrID,
		Linux:       &runtime.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 512},
	})
	if err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := limit(); got != 96<<20 {
		t.Errorf("limit after update %d, want %d", got, 96<<20)
	}
	if got := c.containerStatus(ctrID).GetResources().GetLinux(); got.GetMemoryLimitInBytes() != 96<<20 || got.GetCpuShares() != 512 {
		t.Errorf("status resources %v", got)
	}

	created := c.createContainer(podID, pod, containerConfig("later", env.BusyboxImage, idleCmd...))
	_, err = c.rt.UpdateContainerResources(rpcCtx(t), &runtime.UpdateContainerResourcesRequest{
		ContainerId: created, Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 80 << 20},
	})
	if err != nil {
		t.Fatalf("UpdateContainerResources of a created container: %v", err)
	}
	if _, err := c.rt.StartContainer(rpcCtx(t), &runtime.StartContainerRequest{ContainerId: created}); err != nil {
		t.Fatal(err)
	}
	res := c.execSync(created, 10, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	if strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(80<<20) {
		t.Errorf("created-then-updated container started with limit %q, want %d", res.Stdout, 80<<20)
	}

	_, err = c.rt.UpdateContainerResources(rpcCtx(t), &runtime.UpdateContainerResourcesRequest{ContainerId: "no-such-container", Linux: &runtime.LinuxContainerResources{}})
	wantCode(t, "update of an absent container", err, codes.NotFound)
}

// TestReopenContainerLog rotates a running container's log the kubelet's
// way: rename, then ReopenContainerLog; new output goes to a new file at
// the original path and the old file stops growing.
func TestReopenContainerLog(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "reopen")
	podID := c.runPod(pod)
	cfg := containerConfig("talker", env.BusyboxImage, "sh", "-c", `trap "exit 0" TERM; while true; do echo tick; sleep 0.1; done`)
	ctrID := c.startContainer(podID, pod, cfg)
	path := filepath.Join(pod.LogDirectory, cfg.LogPath)
	waitLog(t, path, 30*time.Second, func(l map[string][]string) bool { return len(l["stdout"]) > 0 })

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rt.ReopenContainerLog(rpcCtx(t), &runtime.ReopenContainerLogRequest{ContainerId: ctrID}); err != nil {
		t.Fatalf("ReopenContainerLog: %v", err)
	}
	waitLog(t, path, 30*time.Second, func(l map[string][]string) bool { return len(l["stdout"]) > 0 })
	before, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	// The new file keeps growing while the rotated one does not.
	waitLog(t, path, 30*time.Second, func(l map[string][]string) bool { return len(l["stdout"]) > 5 })
	after, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("rotated log grew from %d to %d bytes after reopen", len(before), len(after))
	}

	// A symlink planted at the log path is not followed.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	_, err = c.rt.ReopenContainerLog(rpcCtx(t), &runtime.ReopenContainerLogRequest{ContainerId: ctrID})
	if err == nil {
		t.Error("ReopenContainerLog followed a symlink at the log path")
	}
	if _, serr := os.Stat(target); serr == nil {
		t.Error("the symlink's target was created")
	}
	os.Remove(path)

	if _, err := c.rt.StopContainer(rpcCtx(t), &runtime.StopContainerRequest{ContainerId: ctrID, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	_, err = c.rt.ReopenContainerLog(rpcCtx(t), &runtime.ReopenContainerLogRequest{ContainerId: ctrID})
	wantCode(t, "reopen of a stopped container's log", err, codes.FailedPrecondition)
}

// TestStatsMatchTaskMetrics: crishim reads running containers' cgroups
// itself; what it reports must be what containerd's shim reports for the
// same task. An idle container's counters hold still, so both readings
// agree exactly once the container has settled.
func TestStatsMatchTaskMetrics(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "stats-match")
	podID := c.runPod(pod)
	cfg := containerConfig("idle", env.BusyboxImage, "sh", "-c", `trap "exit 0" TERM; sleep 100000 & wait`)
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 48 << 20}}
	ctrID := c.startContainer(podID, pod, cfg)

	cd, err := env.Containerd.Client(testenv.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer cd.Close()
	taskSample := func(id string) stats.Sample {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), testenv.Namespace), 30*time.Second)
		defer cancel()
		resp, err := cd.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
		if err != nil || len(resp.Metrics) != 1 {
			t.Fatalf("task metrics of %s: %v (%d)", id, err, len(resp.GetMetrics()))
		}
		s, err := stats.Decode(resp.Metrics[0].GetData().GetTypeUrl(), resp.Metrics[0].GetData().GetValue(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var last string
	err = testenv.Poll(30*time.Second, 500*time.Millisecond, "CRI stats equal to the task's metrics", func() (bool, error) {
		want := taskSample(ctrID)
		resp, err := c.rt.ContainerStats(rpcCtx(t), &runtime.ContainerStatsRequest{ContainerId: ctrID})
		if err != nil {
			return false, err
		}
		cpu, mem := resp.GetStats().GetCpu(), resp.GetStats().GetMemory()
		got := fmt.Sprintf("cpu %d usage %d working set %d rss %d faults %d/%d available %d",
			cpu.GetUsageCoreNanoSeconds().GetValue(), mem.GetUsageBytes().GetValue(), mem.GetWorkingSetBytes().GetValue(),
			mem.GetRssBytes().GetValue(), mem.GetPageFaults().GetValue(), mem.GetMajorPageFaults().GetValue(), mem.GetAvailableBytes().GetValue())
		wantCRI := fmt.Sprintf("cpu %d usage %d working set %d rss %d faults %d/%d available %d",
			want.CPU, want.MemoryUsage, want.WorkingSet, want.RSS, want.PageFaults, want.MajorPageFaults, want.Limit-want.WorkingSet)
		last = "CRI: " + got + "\ntask: " + wantCRI
		return got == wantCRI && want.Limit == 48<<20 && want.Processes >= 2, nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, last)
	}

	// The writable layer, which crishim measures itself under overlayfs:
	// what containerd's snapshotter reports for the same snapshot.
	c.execSync(ctrID, 10, "sh", "-c", "head -c 300000 /dev/zero > /written && mkdir /d && touch /d/a /d/b")
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), testenv.Namespace), 30*time.Second)
	defer cancel()
	snapUsage, err := cd.SnapshotService("overlayfs").Usage(ctx, ctrID)
	if err != nil {
		t.Fatalf("snapshot usage of %s: %v", ctrID, err)
	}
	st, err := c.rt.ContainerStats(rpcCtx(t), &runtime.ContainerStatsRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatal(err)
	}
	wl := st.GetStats().GetWritableLayer()
	if wl.GetUsedBytes().GetValue() != uint64(snapUsage.Size) || wl.GetInodesUsed().GetValue() != uint64(snapUsage.Inodes) || snapUsage.Size < 300000 {
		t.Errorf("writable layer %d bytes %d inodes, containerd's snapshot %d bytes %d inodes",
			wl.GetUsedBytes().GetValue(), wl.GetInodesUsed().GetValue(), snapUsage.Size, snapUsage.Inodes)
	}

	// The pod: its process count is the pause's plus the container's.
	resp, err := c.rt.PodSandboxStats(rpcCtx(t), &runtime.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if n, want := resp.GetStats().GetLinux().GetProcess().GetProcessCount().GetValue(), taskSample(podID).Processes+taskSample(ctrID).Processes; n != want {
		t.Errorf("pod process count %d, want %d: the pause's and the container's", n, want)
	}
}

// TestStatsKeepCgroupFilesWhileRunning: crishim keeps a running
// container's cgroup files open between stats calls, and lets go of them
// when the container stops, so that a node's churn of containers leaves no
// descriptors behind.
func TestStatsKeepCgroupFilesWhileRunning(t *testing.T) {
	t.Parallel()
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatalf("crishim is not running: %v", err)
	}
	c := newClient(t)
	pod := podConfig(t, "statsfd")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))

	// The cgroup paths crishim has open that name this container.
	openFiles := func() []string {
		dir := fmt.Sprintf("/proc/%d/fd", crishim.Pid())
		fds, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err == nil && strings.HasPrefix(target, "/sys/fs/cgroup/") && strings.Contains(target, ctrID) {
				out = append(out, target)
			}
		}
		return out
	}
	for i := 0; i < 2; i++ {
		list, err := c.rt.ListContainerStats(rpcCtx(t), &runtime.ListContainerStatsRequest{Filter: &runtime.ContainerStatsFilter{Id: ctrID}})
		if err != nil || len(list.Stats) != 1 || list.Stats[0].GetMemory().GetUsageBytes().GetValue() == 0 {
			t.Fatalf("ListContainerStats: %v, %v", err, list.GetStats())
		}
	}
	// cpuacct.usage, memory.usage_in_bytes, memory.limit_in_bytes and
	// memory.stat (cgroup v2: their equivalents), not reopened per call.
	if open := openFiles(); len(open) != 4 {
		t.Fatalf("crishim holds %d of the container's cgroup files after two stats calls, want 4: %v", len(open), open)
	}
	c.stopContainer(ctrID, 10)
	deadline := time.Now().Add(30 * time.Second)
	for open := openFiles(); len(open) > 0; open = openFiles() {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the container stopped crishim still holds %v", open)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
