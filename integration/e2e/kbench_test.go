//go:build linux

package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crishim/crishim/integration/testenv"
)

// The kubelet A/B benchmarks put the same kubelet configuration in front of
// containerd's own CRI plugin (A) and crishim (B), one runtime after the
// other in interleaved rounds (A B, then B A, ...). They are measurements,
// never pass/fail: run them without -race, with -benchtime 1x:
//
//	CRISHIM_K8S_BIN=... go test -count=1 -timeout 2h -v ./integration/e2e/ -run '^$' \
//	    -bench 'KubeletBurst|KubeletIdle' -benchtime 1x -kbench.out /tmp/kbench.md
var (
	burstPods   = flag.Int("burst.pods", 30, "BenchmarkKubeletBurst: static pods dropped at once")
	burstRounds = flag.Int("burst.rounds", 2, "BenchmarkKubeletBurst: rounds per runtime (A B Be, then Be B A, ...)")
	kbenchOut   = flag.String("kbench.out", "", "append the kubelet benchmarks' markdown tables to this file")
)

// variant is a runtime with the kubelet settings one column runs it with.
type variant struct {
	rt      *Runtime
	label   string
	evented bool
}

// interleave orders the variants for round i: forwards on even rounds,
// backwards on odd ones, so that drift on a shared machine (load from other
// jobs, a warming page cache) falls on every column alike.
func interleave(vs []variant, i int) []variant {
	out := append([]variant(nil), vs...)
	if i%2 == 1 {
		for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
			out[l], out[r] = out[r], out[l]
		}
	}
	return out
}

// BenchmarkKubeletBurst drops -burst.pods static pods (a busybox container
// that exits on TERM) into the manifest directory at once and measures the
// time from the drop to each pod's Ready condition, then, after removing
// every manifest at once, the time until the runtime has no running
// container and no ready sandbox left. Columns: A (generic PLEG; containerd
// 1.6 cannot serve GetContainerEvents), B with the generic PLEG and B with
// the EventedPLEG gate. One measurement whatever b.N.
func BenchmarkKubeletBurst(bench *testing.B) {
	var t testing.TB = bench
	if raceEnabled {
		t.Fatal("measure without -race: the race detector dominates crishim's CPU")
	}
	a := startCRIRef(t)
	b, _ := crishimRuntime(t)
	prePull(t, a)
	prePull(t, b)
	vs := []variant{
		{rt: a, label: "A: containerd 1.6 CRI (generic PLEG)"},
		{rt: b, label: "B: crishim (generic PLEG)"},
		{rt: b, label: "B: crishim (EventedPLEG)", evented: true},
	}
	res := map[string][]burstResult{}
	var loads []string
	started := time.Now()
	for i := 0; i < *burstRounds; i++ {
		for _, v := range interleave(vs, i) {
			name := fmt.Sprintf("burst-%d-%s", i, strings.ToLower(strings.Fields(v.label)[0][:1]))
			if v.evented {
				name += "e"
			}
			r := burstRound(t, v, name)
			t.Logf("round %d %s: ready p50 %.2fs max %.2fs, stopped %.2fs", i, v.label, r.p50, r.max, r.gone)
			res[v.label] = append(res[v.label], r)
			loads = append(loads, loadAvg())
		}
	}

	var s strings.Builder
	fmt.Fprintf(&s, "### Kubelet burst: %d static pods at once\n\n", *burstPods)
	fmt.Fprintf(&s, "%s, %d CPUs; %d rounds per column (interleaved A B Be, Be B A, …), run took %v; load average (1 min) after each round: %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), goruntime.NumCPU(), *burstRounds, time.Since(started).Round(time.Second), strings.Join(loads, ", "))
	fmt.Fprintf(&s, "Each cell: mean over the rounds (each round's value). Ready times are polled from the kubelet's /pods every 100 ms.\n\n")
	fmt.Fprintf(&s, "| measure (s) | %s | %s | %s | B/A | B evented/A |\n|---|---:|---:|---:|---:|---:|\n", vs[0].label, vs[1].label, vs[2].label)
	row := func(name string, f func(burstResult) float64) {
		var cells []string
		var means []float64
		for _, v := range vs {
			m, c := meanCell(res[v.label], f)
			cells = append(cells, c)
			means = append(means, m)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", name, cells[0], cells[1], cells[2], ratio(means[1], means[0]), ratio(means[2], means[0]))
	}
	row("drop → Ready, p50", func(r burstResult) float64 { return r.p50 })
	row("drop → all Ready (max)", func(r burstResult) float64 { return r.max })
	row("manifests removed → no running container, no ready sandbox", func(r burstResult) float64 { return r.gone })
	fmt.Fprintf(&s, "\nGoal (issue #14): B/A ≤ 0.8 for the time to all Ready.\n\n")
	fmt.Fprintf(&s, "The kubelet's own measure of its CRI calls from the drop to the last Ready (kubelet_runtime_operations_duration_seconds): mean ms per call (calls per round).\n\n")
	fmt.Fprintf(&s, "| operation | %s | %s | %s | B/A | B evented/A |\n|---|---:|---:|---:|---:|---:|\n", vs[0].label, vs[1].label, vs[2].label)
	opNames := map[string]bool{}
	for _, rs := range res {
		for _, r := range rs {
			for op := range r.ops {
				opNames[op] = true
			}
		}
	}
	for _, op := range slices.Sorted(maps.Keys(opNames)) {
		var cells []string
		var means []float64
		for _, v := range vs {
			var n, sum float64
			for _, r := range res[v.label] {
				n += r.ops[op].n
				sum += r.ops[op].sum
			}
			if n == 0 {
				cells, means = append(cells, "–"), append(means, 0)
				continue
			}
			m := 1000 * sum / n
			cells = append(cells, fmt.Sprintf("%s (%s)", fmtNum(m), fmtNum(n/float64(len(res[v.label])))))
			means = append(means, m)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", op, cells[0], cells[1], cells[2], ratio(means[1], means[0]), ratio(means[2], means[0]))
	}
	s.WriteString("\n")
	report(t, s.String())
}

type burstResult struct {
	p50, max, gone float64
	// ops is what the kubelet measured of its own CRI calls from the drop
	// to the last pod's Ready: the runtime's answer times as its main
	// client sees them, comparable between A and B.
	ops map[string]opTotal
}

// opTotal is one operation type's count and summed seconds in the
// kubelet's kubelet_runtime_operations_duration_seconds histogram.
type opTotal struct {
	n   float64
	sum float64
}

// runtimeOps reads the kubelet's totals of its CRI calls by operation.
func (k *Kubelet) runtimeOps() (map[string]opTotal, error) {
	data, err := k.get("/metrics")
	if err != nil {
		return nil, err
	}
	const name = "kubelet_runtime_operations_duration_seconds_"
	ops := map[string]opTotal{}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		kind, rest, _ := strings.Cut(rest, "{")
		_, rest, _ = strings.Cut(rest, `operation_type="`)
		op, rest, _ := strings.Cut(rest, `"`)
		_, value, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || op == "" {
			continue
		}
		t := ops[op]
		switch kind {
		case "sum":
			t.sum = v
		case "count":
			t.n = v
		default:
			continue
		}
		ops[op] = t
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("no %s* series in the kubelet's /metrics", name)
	}
	return ops, nil
}

// opsSince is each operation's calls and seconds between two readings.
func opsSince(before, after map[string]opTotal) map[string]opTotal {
	d := map[string]opTotal{}
	for op, a := range after {
		b := before[op]
		if a.n > b.n {
			d[op] = opTotal{n: a.n - b.n, sum: a.sum - b.sum}
		}
	}
	return d
}

// burstRound runs one burst on a fresh kubelet and stops it afterwards.
func burstRound(t testing.TB, v variant, name string) burstResult {
	t.Helper()
	k := StartKubelet(t, KubeletOptions{Name: name, Endpoint: v.rt.Socket, EventedPLEG: v.evented})
	defer k.Stop(t)
	// Every manifest is written aside first: the drop is only renames.
	names := make([]string, *burstPods)
	for i := range names {
		names[i] = fmt.Sprintf("burst-%03d", i)
		data, err := json.Marshal(pod(names[i], map[string]any{
			"containers": []any{ctr("app", `trap 'exit 0' TERM; sleep 1000000 & wait`)},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(k.Dir, names[i]+".json.tmp"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opsBefore, err := k.runtimeOps()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, n := range names {
		if err := os.Rename(filepath.Join(k.Dir, n+".json.tmp"), filepath.Join(k.ManifestDir, n+".json")); err != nil {
			t.Fatal(err)
		}
	}
	ready := map[string]float64{}
	err = testenv.Poll(5*time.Minute, 100*time.Millisecond, "all burst pods ready", func() (bool, error) {
		pods, err := k.Pods()
		if err != nil {
			return false, err
		}
		now := time.Since(start).Seconds()
		for i := range pods {
			if _, seen := ready[pods[i].Metadata.Name]; !seen && pods[i].Condition("Ready") {
				ready[pods[i].Metadata.Name] = now
			}
		}
		return len(ready) == len(names), fmt.Errorf("%d of %d ready", len(ready), len(names))
	})
	if err != nil {
		t.Fatalf("%s: %v\nkubelet log tail:\n%s", v.label, err, testenv.Tail(k.LogPath, 40))
	}
	times := make([]float64, 0, len(ready))
	for _, s := range ready {
		times = append(times, s)
	}
	sort.Float64s(times)
	r := burstResult{p50: times[(len(times)-1)/2], max: times[len(times)-1]}
	opsAfter, err := k.runtimeOps()
	if err != nil {
		t.Fatal(err)
	}
	r.ops = opsSince(opsBefore, opsAfter)

	start = time.Now()
	for _, n := range names {
		k.DeletePod(t, n)
	}
	if err := waitRuntimeStopped(v.rt.Socket, 5*time.Minute); err != nil {
		t.Fatalf("%s: %v", v.label, err)
	}
	r.gone = time.Since(start).Seconds()
	return r
}

// meanCell is the mean of f over rs and the cell showing it with each
// round's value.
func meanCell[T any](rs []T, f func(T) float64) (float64, string) {
	if len(rs) == 0 {
		return 0, "–"
	}
	var sum float64
	vals := make([]string, len(rs))
	for i, r := range rs {
		v := f(r)
		sum += v
		vals[i] = fmtNum(v)
	}
	m := sum / float64(len(rs))
	if len(rs) == 1 {
		return m, fmtNum(m)
	}
	return m, fmt.Sprintf("%s (%s)", fmtNum(m), strings.Join(vals, ", "))
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(b, a float64) string {
	if a == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", b/a)
}

// loadAvg is the machine's 1-minute load average.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}

// report logs a benchmark's tables and appends them to -kbench.out.
func report(t testing.TB, md string) {
	t.Log("\n" + md)
	if *kbenchOut == "" {
		return
	}
	f, err := os.OpenFile(*kbenchOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(md + "\n"); err != nil {
		t.Error(err)
	}
}
