package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 10; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{0.5, 5 * time.Millisecond},
		{0.9, 9 * time.Millisecond},
		{0.99, 10 * time.Millisecond},
		{1, 10 * time.Millisecond},
	} {
		if got := Percentile(s, tc.q); got != tc.want {
			t.Errorf("Percentile(1..10 ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(empty) = %v, want 0", got)
	}
}

func TestSummarizeUnsortedInput(t *testing.T) {
	in := []time.Duration{30, 10, 20, 40}
	s := Summarize(in)
	if s.N != 4 || s.P50 != 20 || s.P90 != 40 || s.Max != 40 || s.Mean != 25 {
		t.Errorf("Summarize(%v) = %+v", in, s)
	}
	if in[0] != 30 {
		t.Errorf("Summarize reordered its input: %v", in)
	}
}

func TestRatio(t *testing.T) {
	if r := Ratio(2, 1); r != 0.5 {
		t.Errorf("Ratio(2, 1) = %v", r)
	}
	if r := Ratio(0, 1); !math.IsNaN(r) {
		t.Errorf("Ratio(0, 1) = %v, want NaN", r)
	}
}

func TestMarkdownTable(t *testing.T) {
	a := Summarize([]time.Duration{100 * time.Millisecond, 200 * time.Millisecond})
	b := Summarize([]time.Duration{50 * time.Millisecond, 100 * time.Millisecond})
	tab := Table{
		NameA: "containerd", NameB: "crishim",
		Rows: []Row{
			LatencyRow("RunPodSandbox", a, b),
			ValueRow("pods/s", "%.1f", 4, 6),
			TextRow("note", "a|b", "c"),
			LatencyRow("empty", Summary{}, b),
		},
		Targets: []TargetResult{{Name: "t1", Want: "≤ 0.70", Measured: "0.50", Met: true}, {Name: "t2", Want: "≥ 1.30", Measured: "1.00"}},
		Notes:   []string{"ran while other work ran"},
	}
	got := tab.Markdown()
	for _, want := range []string{
		"| measure | A: containerd | B: crishim | B/A |",
		"| RunPodSandbox (ms, p50/p90/p99) | 100 / 200 / 200 | 50.0 / 100 / 100 | 0.50 / 0.50 / 0.50 |",
		"| pods/s | 4.0 | 6.0 | 1.50 |",
		`| note | a\|b | c | – |`,
		"| empty (ms, p50/p90/p99) | – | 50.0 / 100 / 100 | – |",
		"| t1 | ≤ 0.70 | 0.50 | met |",
		"| t2 | ≥ 1.30 | 1.00 | unmet |",
		"- ran while other work ran",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("table lacks line %q:\n%s", want, got)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// comm with a space and a parenthesis; utime 150, stime 50 ticks.
	stat := "1234 (we ird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 8 0 100 0 0"
	got, err := parseStatCPU(stat)
	if err != nil || got != 2*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 2s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parseStatCPU(garbage) succeeded")
	}
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal: idle and iowait are not busy
	stat := "cpu  100 20 30 5000 700 4 6 10 0 0\ncpu0 50 10 15 2500 350 2 3 5 0 0\n"
	got, err := parseMachineCPU(stat)
	if err != nil || got != 170*clockTick {
		t.Errorf("parseMachineCPU = %v, %v; want %v", got, err, 170*clockTick)
	}
	if _, err := parseMachineCPU("intr 1 2 3\n"); err == nil {
		t.Error("parseMachineCPU accepted a stat without a cpu line")
	}
}

func TestSettle(t *testing.T) {
	if waited, busy := settle(0); waited != 0 || busy != -1 {
		t.Fatalf("settle(0) = %v, %v; want no wait and no measure", waited, busy)
	}
	// A limit shorter than one sample still takes that sample, and its
	// share of busy CPUs is a share.
	waited, busy := settle(time.Nanosecond)
	if waited < time.Second || busy < 0 || busy > 1.05 {
		t.Fatalf("settle(1ns) = %v, %v; want one 1 s sample with a share in [0, 1]", waited, busy)
	}
}
