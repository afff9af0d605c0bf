//go:build linux

package e2e

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crishim/crishim/integration/testenv"
)

// The idle-node measurement is an A/B benchmark (see kbench_test.go):
//
//	go test -count=1 -v ./integration/e2e/ -run '^$' -bench KubeletIdle -benchtime 1x \
//	    [-idle.pods 100] [-idle.window 5m] [-idle.rounds 1] [-idle.cristats] [-idle.evented] \
//	    [-idle.syncfreq 1m] [-idle.logmonitor 10s] [-idle.only B] [-idle.profile /tmp/crishim.pprof]
var (
	idlePods    = flag.Int("idle.pods", 100, "idle static pods for BenchmarkKubeletIdle")
	idleWindow  = flag.Duration("idle.window", 5*time.Minute, "measurement window of BenchmarkKubeletIdle")
	idleRounds  = flag.Int("idle.rounds", 1, "BenchmarkKubeletIdle: rounds per runtime (A B, then B A, ...)")
	idleOnly    = flag.String("idle.only", "", "BenchmarkKubeletIdle: measure only this runtime (A or B), e.g. to profile B")
	idleStats   = flag.Bool("idle.cristats", false, "BenchmarkKubeletIdle: the kubelet takes pod and container stats from the CRI (PodAndContainerStatsFromCRI)")
	idleEvented = flag.Bool("idle.evented", false, "BenchmarkKubeletIdle: the kubelet's EventedPLEG gate for B (A, containerd 1.6, cannot serve it)")
	idleProfile = flag.String("idle.profile", "", "BenchmarkKubeletIdle: write a CPU profile of crishim over B's first window to this file")
	// The suites' kubelet syncs every pod every 5 s and checks logs for
	// rotation every 3 s, to make their scenarios quick; an idle node runs
	// the kubelet's defaults, which these restore. "5s" and "3s" measure
	// under the suites' settings.
	idleSyncFreq   = flag.String("idle.syncfreq", "1m", "BenchmarkKubeletIdle: the kubelet's syncFrequency")
	idleLogMonitor = flag.String("idle.logmonitor", "10s", "BenchmarkKubeletIdle: the kubelet's containerLogMonitorInterval")
)

// idleResult is one idle window of one runtime.
type idleResult struct {
	window   time.Duration
	cpu      map[string]float64 // CPU seconds over the window by process name
	rss      map[string]float64 // MiB at the window's end
	shims    float64
	kubelet  float64
	rpcs     map[string]float64 // per minute
	backend  map[string]float64 // per minute
	load     string
	readyIn  time.Duration
	procsSum float64
}

// BenchmarkKubeletIdle runs -idle.pods static pods under a kubelet on A
// (containerd's CRI plugin) and on B (crishim), in interleaved rounds,
// waits until they are all Ready, then measures over -idle.window what the
// runtime costs while nothing happens: the CRI calls the kubelet makes, the
// containerd round trips crishim makes, the CPU time and RSS of the
// runtime's processes (A: containerd; B: crishim + containerd), its shims
// and the kubelet. One measurement whatever b.N: run it with -benchtime 1x.
func BenchmarkKubeletIdle(bench *testing.B) {
	var t testing.TB = bench
	if raceEnabled {
		t.Fatal("measure without -race: the race detector dominates crishim's CPU")
	}
	var vs []variant
	var crishimRT *Runtime
	var pprofURL string
	if *idleOnly != "B" {
		a := startCRIRef(t)
		prePull(t, a)
		vs = append(vs, variant{rt: a, label: a.Label})
	}
	if *idleOnly != "A" {
		b, u := crishimRuntime(t)
		crishimRT, pprofURL = b, u
		prePull(t, b)
		label := b.Label
		if *idleEvented {
			label += " (EventedPLEG)"
		}
		vs = append(vs, variant{rt: b, label: label, evented: *idleEvented})
	}
	res := map[string][]idleResult{}
	started := time.Now()
	profiled := false
	for i := 0; i < *idleRounds; i++ {
		for _, v := range interleave(vs, i) {
			profile := ""
			if *idleProfile != "" && !profiled && v.rt == crishimRT {
				profile, profiled = *idleProfile, true
			}
			r := idleRound(t, v, fmt.Sprintf("idle-%d-%s", i, strings.ToLower(v.label[:1])), pprofURL, profile)
			res[v.label] = append(res[v.label], r)
		}
	}

	var s strings.Builder
	fmt.Fprintf(&s, "### Kubelet idle node: %d running pods, %v window\n\n", *idlePods, idleWindow.Round(time.Second))
	var loads []string
	for _, v := range vs {
		for _, r := range res[v.label] {
			loads = append(loads, v.label[:1]+" "+r.load)
		}
	}
	fmt.Fprintf(&s, "%s, %d CPUs; %d round(s) per column (interleaved A B, B A, …), run took %v; kubelet syncFrequency %s, containerLogMonitorInterval %s, PodAndContainerStatsFromCRI=%v; load average (1 min) at each window's end: %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), goruntime.NumCPU(), *idleRounds, time.Since(started).Round(time.Second), *idleSyncFreq, *idleLogMonitor, *idleStats, strings.Join(loads, ", "))
	fmt.Fprintf(&s, "Each cell: mean over the rounds (each round's value). CPU seconds are scaled to a 5-minute window.\n\n")
	head := "| measure |"
	sep := "|---|"
	for _, v := range vs {
		head += " " + v.label + " |"
		sep += "---:|"
	}
	if len(vs) == 2 {
		head += " B/A |"
		sep += "---:|"
	}
	fmt.Fprintf(&s, "%s\n%s\n", head, sep)
	row := func(name string, f func(idleResult) float64) {
		line := "| " + name + " |"
		var means []float64
		for _, v := range vs {
			m, c := meanCell(res[v.label], f)
			line += " " + c + " |"
			means = append(means, m)
		}
		if len(vs) == 2 {
			line += " " + ratio(means[1], means[0]) + " |"
		}
		fmt.Fprintln(&s, line)
	}
	per5 := func(r idleResult, v float64) float64 { return v * (5 * time.Minute).Seconds() / r.window.Seconds() }
	row("CPU s per 5 min: the runtime (A: containerd; B: crishim + containerd)", func(r idleResult) float64 { return per5(r, r.procsSum) })
	row("CPU ms of the runtime per CRI call", func(r idleResult) float64 {
		if n := sum(r.rpcs) * r.window.Minutes(); n > 0 {
			return r.procsSum / n * 1000
		}
		return 0
	})
	row("… of which crishim", func(r idleResult) float64 { return per5(r, r.cpu["crishim"]) })
	row("… of which containerd", func(r idleResult) float64 { return per5(r, r.cpu["containerd"]) })
	row("CPU s per 5 min: shims", func(r idleResult) float64 { return per5(r, r.shims) })
	row("CPU s per 5 min: kubelet", func(r idleResult) float64 { return per5(r, r.kubelet) })
	row("RSS MiB: crishim", func(r idleResult) float64 { return r.rss["crishim"] })
	row("RSS MiB: containerd", func(r idleResult) float64 { return r.rss["containerd"] })
	row("seconds until all pods Ready", func(r idleResult) float64 { return r.readyIn.Seconds() })
	methods := map[string]bool{}
	for _, v := range vs {
		for _, r := range res[v.label] {
			for m := range r.rpcs {
				methods[m] = true
			}
		}
	}
	row("CRI calls per minute, total", func(r idleResult) float64 { return sum(r.rpcs) })
	for _, m := range sortedKeys(boolKeys(methods)) {
		row("… "+m, func(r idleResult) float64 { return r.rpcs[m] })
	}
	row("containerd round trips per minute (B: crishim's)", func(r idleResult) float64 { return sum(r.backend) })
	backends := map[string]bool{}
	for _, v := range vs {
		for _, r := range res[v.label] {
			for m := range r.backend {
				backends[m] = true
			}
		}
	}
	for _, m := range sortedKeys(boolKeys(backends)) {
		row("… "+m, func(r idleResult) float64 { return r.backend[m] })
	}
	fmt.Fprintf(&s, "\nGoals (issue #14): B/A ≤ 0.5 for the runtime's CPU; crishim RSS ≤ 60 MiB.\n\n")
	report(t, s.String())
}

// idleRound starts a kubelet on v, runs -idle.pods pods until all are
// Ready, measures one window and stops the kubelet.
func idleRound(t testing.TB, v variant, name, pprofURL, profile string) idleResult {
	t.Helper()
	opts := KubeletOptions{Name: name, Endpoint: v.rt.Socket, EventedPLEG: v.evented, ExtraConfig: map[string]any{
		"syncFrequency": *idleSyncFreq, "containerLogMonitorInterval": *idleLogMonitor,
	}}
	if *idleStats {
		opts.FeatureGates = map[string]bool{"PodAndContainerStatsFromCRI": true}
	}
	k := StartKubelet(t, opts)
	defer k.Stop(t)
	started := time.Now()
	for i := 0; i < *idlePods; i++ {
		k.AddPod(t, pod(fmt.Sprintf("idle-%03d", i), map[string]any{
			"containers": []any{ctr("app", `trap 'exit 0' TERM; sleep 1000000 & wait`)},
		}))
	}
	err := testenv.Poll(10*time.Minute, time.Second, "all idle pods ready", func() (bool, error) {
		pods, err := k.Pods()
		if err != nil {
			return false, err
		}
		ready := 0
		for i := range pods {
			if pods[i].Condition("Ready") {
				ready++
			}
		}
		return ready == *idlePods, fmt.Errorf("%d of %d ready", ready, *idlePods)
	})
	if err != nil {
		t.Fatalf("%s: %v", v.label, err)
	}
	r := idleResult{readyIn: time.Since(started)}
	t.Logf("%s: %d pods ready in %v", v.label, *idlePods, r.readyIn.Round(time.Millisecond))
	// Not synchronisation: the start burst's after-effects (first probes,
	// the first housekeeping and stats rounds) are no part of an idle node.
	time.Sleep(15 * time.Second)

	pids := v.rt.Procs()
	pids["kubelet"] = k.d.Pid()
	profDone := make(chan error, 1)
	if profile != "" {
		go func() {
			profDone <- testenv.Download(fmt.Sprintf("%s/profile?seconds=%d", pprofURL, int(idleWindow.Seconds())), profile, *idleWindow+time.Minute)
		}()
	}
	before, err := v.rt.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	cpuBefore := map[string]float64{}
	for n, pid := range pids {
		cpuBefore[n] = cpuSeconds(t, pid)
	}
	shimsBefore := shimCPU(t, v.rt.Shims())
	start := time.Now()
	time.Sleep(*idleWindow)
	r.window = time.Since(start)
	after, err := v.rt.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	r.cpu, r.rss = map[string]float64{}, map[string]float64{}
	for n, pid := range pids {
		r.cpu[n] = cpuSeconds(t, pid) - cpuBefore[n]
		r.rss[n] = rssMiB(t, pid)
		if n != "kubelet" {
			r.procsSum += r.cpu[n]
		}
	}
	r.kubelet = r.cpu["kubelet"]
	r.shims = shimCPU(t, v.rt.Shims()) - shimsBefore
	r.load = loadAvg()
	perMin := 60 / r.window.Seconds()
	r.rpcs = scale(v.rt.RPCs(before, after), perMin)
	r.backend = scale(v.rt.BackendCalls(before, after), perMin)
	if profile != "" {
		if err := <-profDone; err != nil {
			t.Errorf("CPU profile: %v", err)
		}
	}
	t.Logf("%s: window %v, CPU %v, shims %.2f s, RSS %v, CRI calls/min %v, containerd round trips/min %v, load %s",
		v.label, r.window.Round(time.Second), r.cpu, r.shims, r.rss, r.rpcs, r.backend, r.load)
	return r
}

func scale(m map[string]float64, f float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v * f
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func boolKeys(m map[string]bool) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k := range m {
		out[k] = 0
	}
	return out
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds is a process's user plus system CPU time so far.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("CPU time of %d: %v", pid, err)
	}
	// The command name may hold spaces: fields count from after its ')'.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// shimCPU is the CPU time so far of the shims pids.
func shimCPU(t testing.TB, pids []int) float64 {
	var sum float64
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			sum += cpuSeconds(t, pid)
		}
	}
	return sum
}

func rssMiB(t testing.TB, pid int) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// scrape reads a Prometheus text exposition into sample line -> value.
func scrape(url string) (map[string]float64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	data, err := fetch(http.DefaultClient, req)
	if err != nil {
		return nil, err
	}
	return parseMetrics(data), nil
}

// parseMetrics reads a Prometheus text exposition into sample line -> value.
func parseMetrics(data []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// delta sums the increase of metric's samples between two scrapes by the
// value of one label.
func delta(before, after map[string]float64, metric, label string) map[string]float64 {
	return deltaWhere(before, after, metric, label, "")
}

// deltaWhere is delta over the samples whose labels include match.
func deltaWhere(before, after map[string]float64, metric, label, match string) map[string]float64 {
	out := map[string]float64{}
	for sample, v := range after {
		if !strings.HasPrefix(sample, metric+"{") || !strings.Contains(sample, match) {
			continue
		}
		d := v - before[sample]
		if d == 0 {
			continue
		}
		key := sample
		if i := strings.Index(sample, label+`="`); i >= 0 {
			rest := sample[i+len(label)+2:]
			key = rest[:strings.IndexByte(rest, '"')]
		}
		out[key] += d
	}
	return out
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
