package gomaxprocs

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fake is a clock, a CPU counter and a GOMAXPROCS the test moves by hand.
type fake struct {
	mu    sync.Mutex
	at    time.Time
	procs int
	def   int
	sets  []int
}

func (f *fake) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.at }
func (f *fake) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = f.at.Add(d)
}
func (f *fake) set(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, n)
	if n == 0 {
		n = f.def
	}
	f.procs = n
}
func (f *fake) current() int { f.mu.Lock(); defer f.mu.Unlock(); return f.procs }

func newFake(def int) (*fake, *Governor) {
	f := &fake{at: time.Unix(1000, 0), procs: def, def: def}
	g := newGovernor(1, 10*time.Second, f.now, func() time.Duration { return 0 }, f.set, f.current)
	return f, g
}

func TestLowersOnlyAfterQuietAndRaisesOnKick(t *testing.T) {
	f, g := newFake(4)
	idleSample := func() { g.sample(10*time.Millisecond, time.Second) }
	for i := 0; i < 9; i++ {
		f.advance(time.Second)
		idleSample()
	}
	if got := f.current(); got != 4 {
		t.Fatalf("after 9 s without work GOMAXPROCS = %d, want the default 4", got)
	}
	f.advance(time.Second)
	idleSample()
	if got := f.current(); got != 1 {
		t.Fatalf("after 10 s without work GOMAXPROCS = %d, want 1", got)
	}
	idleSample()
	if len(f.sets) != 1 {
		t.Fatalf("sets = %v: lowering again while lowered", f.sets)
	}
	g.Kick()
	if got := f.current(); got != 4 {
		t.Fatalf("after a Kick GOMAXPROCS = %d, want the default 4", got)
	}
	g.Kick()
	if want := []int{1, 0}; len(f.sets) != len(want) || f.sets[0] != 1 || f.sets[1] != 0 {
		t.Fatalf("sets = %v, want %v (a second Kick changes nothing)", f.sets, want)
	}
	// The Kick restarts the quiet period.
	f.advance(9 * time.Second)
	idleSample()
	if got := f.current(); got != 4 {
		t.Fatalf("9 s after a Kick GOMAXPROCS = %d, want 4", got)
	}
}

func TestBusySampleCountsAsWork(t *testing.T) {
	f, g := newFake(2)
	f.advance(11 * time.Second)
	g.sample(0, time.Second)
	if got := f.current(); got != 1 {
		t.Fatalf("GOMAXPROCS = %d after 11 idle seconds, want 1", got)
	}
	// A quarter of a CPU over the sample is work no call announced.
	g.sample(300*time.Millisecond, time.Second)
	if got := f.current(); got != 2 {
		t.Fatalf("GOMAXPROCS = %d after a busy sample, want the default 2", got)
	}
	for i := 0; i < 5; i++ {
		f.advance(time.Second)
		g.sample(300*time.Millisecond, time.Second)
	}
	f.advance(9 * time.Second)
	g.sample(0, time.Second)
	if got := f.current(); got != 2 {
		t.Fatalf("GOMAXPROCS = %d 9 s after the last busy sample, want 2", got)
	}
}

func TestNothingToLowerOnOneCPU(t *testing.T) {
	f, g := newFake(1)
	f.advance(time.Minute)
	g.sample(0, time.Second)
	g.Kick()
	if len(f.sets) != 0 {
		t.Fatalf("sets = %v on a default of 1, want none", f.sets)
	}
}

func TestNilGovernorIsANoOp(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	g := New(1)
	if g != nil {
		t.Fatal("New with GOMAXPROCS in the environment returned a governor")
	}
	g.Kick()
	g.Run(context.Background()) // returns at once
}

// TestRealRuntime runs the governor on the Go runtime itself, with a short
// quiet period: GOMAXPROCS goes to 1 and comes back as the runtime's
// default, which Go recomputes from the CPUs and cgroup limit.
func TestRealRuntime(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Fatalf("GOMAXPROCS is %d: this test needs a machine with 2 CPUs or more", def)
	}
	t.Cleanup(func() { runtime.SetDefaultGOMAXPROCS() })
	g := newGovernor(1, 50*time.Millisecond, time.Now, processCPU, func(n int) {
		if n == 0 {
			runtime.SetDefaultGOMAXPROCS()
			return
		}
		runtime.GOMAXPROCS(n)
	}, func() int { return runtime.GOMAXPROCS(0) })
	deadline := time.Now().Add(10 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS still %d 10 s into an idle process", runtime.GOMAXPROCS(0))
		}
		time.Sleep(10 * time.Millisecond) // the governor's own sampling period, shortened
		g.sample(0, 10*time.Millisecond)
	}
	g.Kick()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Fatalf("GOMAXPROCS = %d after Kick, want the default %d", got, def)
	}
	if used := processCPU(); used <= 0 {
		t.Fatalf("processCPU = %v, want this process's CPU time", used)
	}
}
