package stats

import (
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/stats/v1"
	v2 "github.com/containerd/cgroups/v2/stats"
)

func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct{ usage, inactive, want uint64 }{
		{100, 30, 70},
		{100, 0, 100},
		{100, 100, 0},
		{100, 150, 0}, // racy reads can see more inactive than usage
	} {
		if got := WorkingSet(tc.usage, tc.inactive); got != tc.want {
			t.Errorf("WorkingSet(%d, %d) = %d, want %d", tc.usage, tc.inactive, got, tc.want)
		}
	}
}

func TestDecodeCgroupV1(t *testing.T) {
	m := &v1.Metrics{
		CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: 5e9}},
		Memory: &v1.MemoryStat{
			Usage:             &v1.MemoryEntry{Usage: 10 << 20, Limit: 0x7FFFFFFFFFFFF000},
			TotalInactiveFile: 4 << 20,
			TotalRSS:          3 << 20,
			PgFault:           7,
			PgMajFault:        2,
		},
		Pids: &v1.PidsStat{Current: 3},
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(100, 0)
	s, err := Decode("types.containerd.io/io.containerd.cgroups.v1.Metrics", data, at)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{At: at, CPU: 5e9, MemoryUsage: 10 << 20, WorkingSet: 6 << 20, RSS: 3 << 20, PageFaults: 7, MajorPageFaults: 2, Processes: 3}
	if s != want {
		t.Errorf("decoded %+v, want %+v", s, want)
	}
	if mem := s.MemoryUsageCRI(); mem.AvailableBytes != nil {
		t.Errorf("available %d reported for an unlimited cgroup", mem.AvailableBytes.Value)
	}
}

func TestDecodeCgroupV2(t *testing.T) {
	m := &v2.Metrics{
		CPU:    &v2.CPUStat{UsageUsec: 1500},
		Memory: &v2.MemoryStat{Usage: 1000, UsageLimit: 4000, InactiveFile: 100, Anon: 600, Pgfault: 9, Pgmajfault: 1},
		Pids:   &v2.PidsStat{Current: 2},
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode("io.containerd.cgroups.v2.Metrics", data, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU != 1500000 || s.WorkingSet != 900 || s.RSS != 600 || s.Limit != 4000 || s.Processes != 2 {
		t.Errorf("decoded %+v", s)
	}
	mem := s.MemoryUsageCRI()
	if mem.AvailableBytes.GetValue() != 3100 || mem.WorkingSetBytes.GetValue() != 900 || mem.PageFaults.GetValue() != 9 || mem.MajorPageFaults.GetValue() != 1 {
		t.Errorf("CRI memory %v", mem)
	}
}

func TestDecodeUnknownType(t *testing.T) {
	if _, err := Decode("io.containerd.windows.Stats", nil, time.Now()); err == nil {
		t.Error("decoded metrics of an unknown type")
	}
}

func TestRates(t *testing.T) {
	r := NewRates()
	t0 := time.Unix(1000, 0)
	if got := r.Observe("a", t0, 1e9); got != nil {
		t.Fatalf("first sample gave a rate %d", *got)
	}
	// Half a core over two seconds.
	got := r.Observe("a", t0.Add(2*time.Second), 2e9)
	if got == nil || *got != 5e8 {
		t.Fatalf("rate = %v, want 5e8", got)
	}
	// Too close to the previous sample: the previous rate again, and the
	// sample is not taken as the new base.
	got = r.Observe("a", t0.Add(2*time.Second+100*time.Millisecond), 9e9)
	if got == nil || *got != 5e8 {
		t.Fatalf("close sample rate = %v, want the previous 5e8", got)
	}
	got = r.Observe("a", t0.Add(4*time.Second), 4e9)
	if got == nil || *got != 1e9 {
		t.Fatalf("rate = %v, want one core", got)
	}
	// A restarted container's counter starts over: no rate, new base.
	if got := r.Observe("a", t0.Add(6*time.Second), 1e6); got != nil {
		t.Fatalf("rate %d across a counter reset", *got)
	}
	if got := r.Observe("b", t0, 1); got != nil {
		t.Fatal("ids share samples")
	}
	r.Forget(func(id string) bool { return id == "b" })
	if r.Len() != 1 {
		t.Errorf("%d ids after Forget, want 1", r.Len())
	}
}

func TestRateLargeDelta(t *testing.T) {
	// 64 cores busy for a day must not overflow.
	prev := rateState{at: time.Unix(0, 0), cpu: 0}
	day := 24 * time.Hour
	_, rate := nextRate(prev, true, time.Unix(0, 0).Add(day), uint64(64*day))
	if rate == nil || *rate != 64e9 {
		t.Fatalf("rate = %v, want 64e9", rate)
	}
}

func TestAdd(t *testing.T) {
	a := Sample{At: time.Unix(1, 0), CPU: 1, MemoryUsage: 2, WorkingSet: 3, RSS: 4, PageFaults: 5, MajorPageFaults: 6, Limit: 100, Processes: 1}
	b := Sample{At: time.Unix(2, 0), CPU: 10, MemoryUsage: 20, WorkingSet: 30, RSS: 40, PageFaults: 50, MajorPageFaults: 60, Limit: 100, Processes: 2}
	got := a.Add(b)
	want := Sample{At: time.Unix(2, 0), CPU: 11, MemoryUsage: 22, WorkingSet: 33, RSS: 44, PageFaults: 55, MajorPageFaults: 66, Processes: 3}
	if got != want {
		t.Errorf("sum %+v, want %+v (a pod has no limit of its own here)", got, want)
	}
}
