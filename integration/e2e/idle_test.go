//go:build linux

package e2e

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crishim/crishim/integration/testenv"
)

// The idle measurement is a measurement, not a pass/fail test: timings on
// this shared machine are noise to a test. It runs only when asked:
//
//	go test -count=1 -v ./integration/e2e/ -run BenchmarkKubeletIdle -idle \
//	    [-idle.pods 30] [-idle.window 90s] [-idle.cristats] [-idle.profile /tmp/crishim.pprof]
var (
	idlePods    = flag.Int("idle.pods", 30, "idle static pods for BenchmarkKubeletIdle")
	idleWindow  = flag.Duration("idle.window", 90*time.Second, "measurement window of BenchmarkKubeletIdle")
	idleStats   = flag.Bool("idle.cristats", false, "BenchmarkKubeletIdle: the kubelet takes pod and container stats from the CRI (PodAndContainerStatsFromCRI)")
	idleEvented = flag.Bool("idle.evented", false, "BenchmarkKubeletIdle: the kubelet's EventedPLEG gate")
	idleProfile = flag.String("idle.profile", "", "BenchmarkKubeletIdle: write a CPU profile of crishim over the window to this file")
)

// BenchmarkKubeletIdle runs -idle.pods static pods under a kubelet, waits
// until they are all Ready, then measures over -idle.window what the
// runtime costs while nothing happens: the CRI calls the kubelet makes, the
// containerd round trips crishim makes, and the CPU time and RSS of crishim
// and containerd. One measurement whatever b.N: run it with -benchtime 1x.
func BenchmarkKubeletIdle(bench *testing.B) {
	var t testing.TB = bench
	if raceEnabled {
		t.Fatal("measure without -race: the race detector dominates crishim's CPU")
	}
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	pprofURL := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", ports[1])
	// Info, as a node runs it: the suites' debug level logs every call.
	crishim.SetExtraArgs("--log-level", "info",
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--debug-address", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err := crishim.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		crishim.SetExtraArgs()
		if err := crishim.Restart(); err != nil {
			t.Errorf("restart crishim with its usual flags: %v", err)
		}
	})

	opts := KubeletOptions{Name: "idle", EventedPLEG: *idleEvented}
	if *idleStats {
		opts.FeatureGates = map[string]bool{"PodAndContainerStatsFromCRI": true}
	}
	k := StartKubelet(t, opts)
	started := time.Now()
	for i := 0; i < *idlePods; i++ {
		k.AddPod(t, pod(fmt.Sprintf("idle-%03d", i), map[string]any{
			"containers": []any{ctr("app", `trap 'exit 0' TERM; sleep 1000000 & wait`)},
		}))
	}
	err = testenv.Poll(5*time.Minute, time.Second, "all idle pods ready", func() (bool, error) {
		pods, err := k.Pods()
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods {
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready++
				}
			}
		}
		return ready == *idlePods, fmt.Errorf("%d of %d ready", ready, *idlePods)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods ready in %v", *idlePods, time.Since(started).Round(time.Millisecond))
	// Let the start burst's after-effects (probes of new pods, the first
	// housekeeping rounds) pass before measuring.
	time.Sleep(15 * time.Second)

	pids := map[string]int{"crishim": crishim.Pid(), "containerd": env.Containerd.Pid(), "kubelet": k.d.Pid()}
	profDone := make(chan error, 1)
	if *idleProfile != "" {
		go func() {
			profDone <- fetchTo(fmt.Sprintf("%s?seconds=%d", pprofURL, int(idleWindow.Seconds())), *idleProfile)
		}()
	}
	before, err := scrape(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	cpuBefore := map[string]float64{}
	for name, pid := range pids {
		cpuBefore[name] = cpuSeconds(t, pid)
	}
	shimsBefore := shimCPU(t)
	start := time.Now()
	time.Sleep(*idleWindow)
	window := time.Since(start)
	after, err := scrape(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	cpu := map[string]float64{}
	for name, pid := range pids {
		cpu[name] = cpuSeconds(t, pid) - cpuBefore[name]
	}
	shims := shimCPU(t) - shimsBefore
	if *idleProfile != "" {
		if err := <-profDone; err != nil {
			t.Errorf("CPU profile: %v", err)
		}
	}

	perMin := 60 / window.Seconds()
	per90 := 90 / window.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "idle node: %d pods, window %v, cristats=%v evented=%v\n", *idlePods, window.Round(time.Second), *idleStats, *idleEvented)
	rpcs := delta(before, after, "crishim_grpc_requests_total", "rpc")
	var totalRPC float64
	for _, r := range sortedKeys(rpcs) {
		fmt.Fprintf(&b, "  CRI %-24s %7.1f /min\n", r, rpcs[r]*perMin)
		totalRPC += rpcs[r]
	}
	cd := delta(before, after, "crishim_containerd_requests_total", "method")
	var totalCD float64
	for _, m := range sortedKeys(cd) {
		fmt.Fprintf(&b, "  containerd %-40s %7.1f /min\n", m, cd[m]*perMin)
		totalCD += cd[m]
	}
	if totalRPC > 0 {
		fmt.Fprintf(&b, "  CRI calls %.1f /min, containerd round trips %.1f /min (%.3f per CRI call)\n", totalRPC*perMin, totalCD*perMin, totalCD/totalRPC)
	}
	fmt.Fprintf(&b, "  CPU per 90 s: crishim %.3f s, containerd %.3f s, shims %.3f s, kubelet %.3f s\n",
		cpu["crishim"]*per90, cpu["containerd"]*per90, shims*per90, cpu["kubelet"]*per90)
	if totalRPC > 0 {
		fmt.Fprintf(&b, "  crishim CPU per CRI call: %.3f ms\n", cpu["crishim"]/totalRPC*1000)
	}
	fmt.Fprintf(&b, "  RSS: crishim %.1f MiB, containerd %.1f MiB\n", rssMiB(t, pids["crishim"]), rssMiB(t, pids["containerd"]))
	t.Log("\n" + b.String())
	if out := os.Getenv("CRISHIM_IDLE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
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

// shimCPU is the CPU time so far of every shim serving the test containerd.
func shimCPU(t testing.TB) float64 {
	var sum float64
	for _, pid := range env.Containerd.Shims() {
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
	out := map[string]float64{}
	for sample, v := range after {
		if !strings.HasPrefix(sample, metric+"{") {
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

// fetchTo saves a URL's body to path.
func fetchTo(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
