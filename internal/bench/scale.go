package bench

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Measures of the scale round: the read-only calls a kubelet makes all the
// time (relist, status, stats), timed while ScalePods pods run.
const (
	mScaleListPods  = "ListPodSandbox"
	mScaleListCtrs  = "ListContainers"
	mScaleStatus    = "ContainerStatus"
	mScaleListStats = "ListContainerStats"
	// The same lists with the reply counted but not decoded: the runtime's
	// and the transport's part of the latency.
	mScaleListPodsRaw = "ListPodSandbox (reply not decoded)"
	mScaleListCtrsRaw = "ListContainers (reply not decoded)"
)

var scaleMeasures = []string{mScaleListPods, mScaleListPodsRaw, mScaleListCtrs, mScaleListCtrsRaw, mScaleStatus, mScaleListStats}

// Per running pod (pause + one sleeping container, one shim): the shim's
// resident set measured at 100 pods is ~13 MiB, and the daemons and the
// kernel (cgroups, netns, veth, overlay mounts) add a few more. A shim runs
// ~10 threads, and pause, sh and sleep are one each.
const (
	scaleMemPerPod     = 16 << 20
	scaleThreadsPerPod = 16
)

// scaleResult is one endpoint's scale round.
type scaleResult struct {
	requested, pods     int
	started             int // pods whose container reached RUNNING
	failures            int
	firstErr            error
	limitReason         string
	startWall, stopWall time.Duration
	calls               *recorder
	serverCPU           map[string]time.Duration // the server's CPU over each measure's block of calls
	serverCalls         map[string]int
	serverRSS           int64
	backendRSSBefore    int64
	backendRSSAt        int64
	shims               int
	shimRSS             int64
	listed              map[string]int // what each list returned with all pods up
	leftoverPods        int
	leftoverCtrs        int
	leftoverShims       int
	leaks               []string
	loadAvg             string
	settled             time.Duration // waited for the machine to settle before the calls
	settledBusy         float64       // share of the CPUs busy in the last second of that wait
	callsBusy           float64       // share of the CPUs busy while the calls were timed
}

// newScaleResult is an empty round for requested pods; its busy shares
// read as not measured until the round measures them.
func newScaleResult(requested int) *scaleResult {
	return &scaleResult{requested: requested, calls: newRecorder(), listed: map[string]int{},
		serverCPU: map[string]time.Duration{}, serverCalls: map[string]int{}, settledBusy: -1, callsBusy: -1}
}

// ScaleFit is how many of want pods this machine can hold now, and why
// fewer when it cannot hold them all: the pod network must have an address
// for each (addresses, 0: not known), MemAvailable must keep a quarter of
// itself free after the pods' estimated memory, and the pods' threads must
// fit under pid_max beside the tasks already running.
func ScaleFit(want, addresses int) (int, string) {
	n, reason := want, ""
	if addresses > 0 && addresses < n {
		n = addresses
		reason = fmt.Sprintf("IP addresses: the pod network holds %d", addresses)
	}
	if avail, err := memAvailable(); err == nil {
		if byMem := int(avail * 3 / 4 / scaleMemPerPod); byMem < n {
			n = byMem
			reason = fmt.Sprintf("memory: %d MiB available, ~%d MiB per pod, a quarter kept free", avail>>20, scaleMemPerPod>>20)
		}
	}
	if pidMax, tasks, err := pidRoom(); err == nil {
		if byPid := (pidMax - tasks) * 3 / 4 / scaleThreadsPerPod; byPid < n {
			n = byPid
			reason = fmt.Sprintf("pids: pid_max %d, %d tasks running, ~%d threads per pod", pidMax, tasks, scaleThreadsPerPod)
		}
	}
	if n < 0 {
		n = 0
	}
	return n, reason
}

func memAvailable() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}

// pidRoom reads pid_max and the number of tasks (threads) on the machine.
func pidRoom() (pidMax, tasks int, err error) {
	data, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, 0, err
	}
	if pidMax, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
		return 0, 0, err
	}
	// The fourth field of loadavg is running/total scheduling entities.
	data, err = os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("malformed /proc/loadavg %q", data)
	}
	_, total, ok := strings.Cut(f[3], "/")
	if !ok {
		return 0, 0, fmt.Errorf("malformed /proc/loadavg %q", data)
	}
	tasks, err = strconv.Atoi(total)
	return pidMax, tasks, err
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

// runScale starts ScalePods pods at Concurrency, checks that every list
// shows all of them, times ScaleQueries calls of each read-only call
// (ContainerStatus on random containers; a tenth as many stats), measures
// the daemons and shims, then stops and removes every pod at Concurrency
// and checks that nothing is left.
func runScale(side string, s *sideResult, cfg Config) {
	r := newScaleResult(cfg.ScalePods)
	s.scale = r
	// Failures are counted for the round as well as for the side, from
	// the parallel starts and stops too.
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		r.failures++
		if r.firstErr == nil {
			r.firstErr = err
		}
		s.fail(err)
	}
	r.pods, r.limitReason = ScaleFit(cfg.ScalePods, cfg.ScaleAddresses)
	if r.pods == 0 {
		fail(fmt.Errorf("scale: no room for a single pod (%s)", r.limitReason))
		return
	}
	if u, err := ReadUsage(cfg.ContainerdPID); err == nil {
		r.backendRSSBefore = u.RSS
	}

	pods := make([]runningPod, r.pods)
	start := time.Now()
	_ = parallel(r.pods, cfg.Concurrency, func(i int) error {
		p, err := s.c.startPod(fmt.Sprintf("scale-%d", i), cooperativeScript, nil, nil, "")
		pods[i] = p
		if err != nil {
			fail(fmt.Errorf("scale: start pod %d: %w", i, err))
		}
		return err
	})
	r.startWall = time.Since(start)
	var ctrs []string
	for _, p := range pods {
		if p.ctrID != "" {
			ctrs = append(ctrs, p.ctrID)
		}
	}
	r.started = len(ctrs)

	if len(ctrs) > 0 {
		r.settled, r.settledBusy = settle(cfg.ScaleSettle)
		if cfg.BeforeScaleQueries != nil {
			cfg.BeforeScaleQueries(side)
		}
		busy := busySince()
		r.queries(s, cfg, ctrs, fail)
		r.callsBusy = busy()
	}
	r.loadAvg = loadAvg()
	if u, err := ReadUsage(s.ep.PID); err == nil {
		r.serverRSS = u.RSS
	}
	if u, err := ReadUsage(cfg.ContainerdPID); err == nil {
		r.backendRSSAt = u.RSS
	}
	r.shims, r.shimRSS = ShimUsage(s.ep.ShimNamespace, s.ep.ShimAddress)
	if cfg.AtScale != nil {
		cfg.AtScale(side)
	}

	start = time.Now()
	_ = parallel(len(pods), cfg.Concurrency, func(i int) error {
		if err := s.c.stopPod(pods[i], cooperativeTimeout, nil); err != nil {
			fail(fmt.Errorf("scale: stop pod %d: %w", i, err))
			s.c.discard(pods[i])
			return err
		}
		return nil
	})
	r.stopWall = time.Since(start)
	var err error
	if r.leftoverPods, r.leftoverCtrs, err = s.c.leftovers(); err != nil {
		fail(err)
	}
	// A shim leaves once containerd has deleted its last task; give it
	// the time a loaded machine needs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.leftoverShims, _ = ShimUsage(s.ep.ShimNamespace, s.ep.ShimAddress)
		if r.leftoverShims == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cfg.Leaks != nil {
		leaks, err := cfg.Leaks(side)
		if err != nil {
			fail(fmt.Errorf("scale: looking for leftovers: %w", err))
		}
		r.leaks = leaks
	}
	if r.leftoverPods+r.leftoverCtrs+r.leftoverShims+len(r.leaks) > 0 {
		fail(fmt.Errorf("scale: left behind %d pods, %d containers, %d shims, %d other objects (%s)",
			r.leftoverPods, r.leftoverCtrs, r.leftoverShims, len(r.leaks), strings.Join(first(r.leaks, 5), "; ")))
	}
}

// settle waits, at most limit, for a second in which the machine's CPUs
// are under half busy, and says how long it waited and how busy that last
// second was (-1: not measured).
func settle(limit time.Duration) (time.Duration, float64) {
	if limit <= 0 {
		return 0, -1
	}
	start := time.Now()
	for {
		busy := busySince()
		time.Sleep(time.Second)
		b := busy()
		if b < 0.5 || time.Since(start) >= limit {
			return time.Since(start), b
		}
	}
}

// busySince starts measuring the share of the machine's CPUs that is busy;
// the function it returns gives that share since the call (-1 when
// /proc/stat cannot be read).
func busySince() func() float64 {
	cpus := float64(goruntime.NumCPU())
	start := time.Now()
	before, err := MachineCPU()
	return func() float64 {
		after, err2 := MachineCPU()
		wall := time.Since(start)
		if err != nil || err2 != nil || wall <= 0 {
			return -1
		}
		return float64(after-before) / float64(wall) / cpus
	}
}

func first(xs []string, n int) []string {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

// queries checks that the lists hold every pod and container, then times
// cfg.ScaleQueries rounds of the four read-only calls, one after another
// as a kubelet's relist and status loop make them.
func (r *scaleResult) queries(s *sideResult, cfg Config, ctrs []string, fail func(error)) {
	want := len(ctrs)
	call := func(measure string, fn func(ctx context.Context) (int, error)) {
		var n int
		if err := timed(r.calls, measure, func(ctx context.Context) error {
			var err error
			n, err = fn(ctx)
			return err
		}); err != nil {
			fail(fmt.Errorf("scale: %w", err))
			return
		}
		if measure != mScaleStatus && n < want {
			fail(fmt.Errorf("scale: %s returned %d items with %d containers running", measure, n, want))
		}
		if n > r.listed[measure] {
			r.listed[measure] = n
		}
	}
	// One block of calls per measure, so that the server's CPU time over
	// each block says what one call costs it: unlike latency, that does
	// not depend on how busy the rest of the machine is.
	rng := rand.New(rand.NewSource(1))
	block := func(measure string, one func()) {
		before, errBefore := ReadUsage(s.ep.PID)
		for q := 0; q < cfg.ScaleQueries; q++ {
			one()
		}
		if after, err := ReadUsage(s.ep.PID); err == nil && errBefore == nil {
			r.serverCPU[measure] += after.CPU - before.CPU
			r.serverCalls[measure] += cfg.ScaleQueries
		}
	}
	block(mScaleListPods, func() {
		call(mScaleListPods, func(ctx context.Context) (int, error) {
			resp, err := s.c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return len(resp.GetItems()), err
		})
	})
	block(mScaleListCtrs, func() {
		call(mScaleListCtrs, func(ctx context.Context) (int, error) {
			resp, err := s.c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			return len(resp.GetContainers()), err
		})
	})
	block(mScaleListPodsRaw, func() {
		call(mScaleListPodsRaw, func(ctx context.Context) (int, error) {
			return invokeRaw(ctx, s.c.conn, runtime.RuntimeService_ListPodSandbox_FullMethodName, &runtime.ListPodSandboxRequest{})
		})
	})
	block(mScaleListCtrsRaw, func() {
		call(mScaleListCtrsRaw, func(ctx context.Context) (int, error) {
			return invokeRaw(ctx, s.c.conn, runtime.RuntimeService_ListContainers_FullMethodName, &runtime.ListContainersRequest{})
		})
	})
	block(mScaleStatus, func() {
		id := ctrs[rng.Intn(len(ctrs))]
		call(mScaleStatus, func(ctx context.Context) (int, error) {
			resp, err := s.c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
			if err == nil && resp.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING {
				err = fmt.Errorf("container %s is %s", id, resp.GetStatus().GetState())
			}
			return 1, err
		})
	})
	// Stats cost a thousand times more; a tenth of the calls measure them.
	stats := max(cfg.ScaleQueries/10, 1)
	before, errBefore := ReadUsage(s.ep.PID)
	for q := 0; q < stats; q++ {
		call(mScaleListStats, func(ctx context.Context) (int, error) {
			resp, err := s.c.rt.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
			return len(resp.GetStats()), err
		})
	}
	if after, err := ReadUsage(s.ep.PID); err == nil && errBefore == nil {
		r.serverCPU[mScaleListStats] += after.CPU - before.CPU
		r.serverCalls[mScaleListStats] += stats
	}
}

// busyText shows the two busy shares of a scale round ("–" if unmeasured).
func busyText(settled, calls float64) string {
	pct := func(f float64) string {
		if f < 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f%%", f*100)
	}
	return pct(settled) + "; " + pct(calls)
}

// ScaleTable is the scale round's own table: a few hundred running pods
// measure other things than the lifecycle rounds.
func (r *Report) ScaleTable() (Table, bool) {
	a, b := r.a.scale, r.b.scale
	if a == nil && b == nil {
		return Table{}, false
	}
	// A side that did not run shows as zeros and its notes say so.
	skipped := func(x **scaleResult, key string) string {
		if *x != nil {
			return ""
		}
		*x = newScaleResult(0)
		return fmt.Sprintf("the scale round did not run on %s (-scale-sides %s)", key, r.cfg.ScaleSides)
	}
	var skipNotes []string
	for _, n := range []string{skipped(&a, "A"), skipped(&b, "B")} {
		if n != "" {
			skipNotes = append(skipNotes, n)
		}
	}
	t := Table{
		Title: fmt.Sprintf("scale: %d pods with one container each per endpoint (requested %d), started and stopped at c=%d, %d calls each of the list and status calls (a tenth as many stats) with all of them running",
			max(a.pods, b.pods), r.cfg.ScalePods, r.cfg.Concurrency, r.cfg.ScaleQueries),
		NameA: r.a.ep.Name, NameB: r.b.ep.Name,
	}
	t.Rows = append(t.Rows, ValueRow("pods started (container RUNNING)", "%.0f", float64(a.started), float64(b.started)))
	for _, m := range scaleMeasures {
		t.Rows = append(t.Rows, LatencyRow(fmt.Sprintf("%s with %d pods", m, max(a.pods, b.pods)), Summarize(a.calls.get(m)), Summarize(b.calls.get(m))))
	}
	cpuPerCall := func(x *scaleResult, m string) float64 {
		if x.serverCalls[m] == 0 {
			return 0
		}
		return float64(x.serverCPU[m]) / float64(time.Millisecond) / float64(x.serverCalls[m])
	}
	for _, m := range scaleMeasures {
		t.Rows = append(t.Rows, ValueRow(fmt.Sprintf("%s: CPU ms of the CRI server process per call", m), "%.2f", cpuPerCall(a, m), cpuPerCall(b, m)))
	}
	t.Rows = append(t.Rows,
		ValueRow(fmt.Sprintf("seconds to start %d pods at c=%d (each to its container RUNNING)", b.pods, r.cfg.Concurrency), "%.1f", a.startWall.Seconds(), b.startWall.Seconds()),
		ValueRow(fmt.Sprintf("seconds to stop and remove %d pods at c=%d", b.pods, r.cfg.Concurrency), "%.1f", a.stopWall.Seconds(), b.stopWall.Seconds()),
		ValueRow("RSS MiB of the CRI server process with all pods running", "%.1f", mib(a.serverRSS), mib(b.serverRSS)),
		ValueRow("containerd RSS growth MiB with all pods running", "%.1f", mib(a.backendRSSAt-a.backendRSSBefore), mib(b.backendRSSAt-b.backendRSSBefore)),
		ValueRow("shims", "%.0f", float64(a.shims), float64(b.shims)),
		ValueRow("shim RSS MiB, total", "%.0f", mib(a.shimRSS), mib(b.shimRSS)),
		ValueRow(fmt.Sprintf("seconds waited after the starts for the machine to settle (a second under half busy; at most %s)", r.cfg.ScaleSettle), "%.1f", a.settled.Seconds(), b.settled.Seconds()),
		TextRow("CPUs busy in the last second of that wait; while the calls were timed", busyText(a.settledBusy, a.callsBusy), busyText(b.settledBusy, b.callsBusy)),
		TextRow("load average after the calls (1, 5, 15 min)", a.loadAvg, b.loadAvg),
	)
	left := func(x *scaleResult) string {
		return fmt.Sprintf("%d pods, %d containers, %d shims, %d other", x.leftoverPods, x.leftoverCtrs, x.leftoverShims, len(x.leaks))
	}
	t.Rows = append(t.Rows,
		TextRow("left afterwards (listed; shims; containerd objects, mounts, IPs, veths, nat rules)", left(a), left(b)),
		TextRow("failed operations", fmt.Sprint(a.failures), fmt.Sprint(b.failures)),
	)

	// The goal is for the list and status calls, which must be
	// answered from memory; stats read every container's cgroup files.
	// The goal is timed as a client sees it, decoding included; the lists
	// without decoding are the part crishim and the transport answer for.
	for _, m := range []string{mScaleListPods, mScaleListCtrs, mScaleStatus, mScaleListPodsRaw, mScaleListCtrsRaw} {
		sb := Summarize(b.calls.get(m))
		t.Targets = append(t.Targets, TargetResult{
			Name: fmt.Sprintf("%s p99 with %d pods, B", m, b.pods), Want: "≤ 5 ms",
			Measured: ms(sb.P99) + " ms", Met: sb.N > 0 && sb.P99 <= 5*time.Millisecond,
		})
	}
	t.Targets = append(t.Targets, TargetResult{
		Name: fmt.Sprintf("crishim RSS with %d pods", b.pods), Want: "≤ 80 MiB",
		Measured: fmt.Sprintf("%.1f MiB", mib(b.serverRSS)), Met: b.serverRSS > 0 && b.serverRSS <= 80<<20,
	})
	t.Targets = append(t.Targets, TargetResult{
		Name: "nothing left afterwards, B", Want: "0", Measured: left(b),
		Met: b.leftoverPods+b.leftoverCtrs+b.leftoverShims+len(b.leaks) == 0,
	})
	t.Notes = append(t.Notes, skipNotes...)
	for _, side := range []struct {
		key string
		x   *scaleResult
	}{{"A", a}, {"B", b}} {
		key, x := side.key, side.x
		if x.firstErr != nil {
			t.Notes = append(t.Notes, fmt.Sprintf("first failure on %s: %v", key, x.firstErr))
		}
		if x.limitReason != "" {
			t.Notes = append(t.Notes, fmt.Sprintf("%s ran %d of the %d pods asked for: %s", key, x.pods, x.requested, x.limitReason))
		}
		for _, l := range first(x.leaks, 10) {
			t.Notes = append(t.Notes, fmt.Sprintf("left on %s: %s", key, l))
		}
	}
	return t, true
}
