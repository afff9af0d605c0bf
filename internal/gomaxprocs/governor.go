// Package gomaxprocs lowers the Go runtime's GOMAXPROCS while crishim has
// nothing to do and gives the runtime its default back as soon as it has.
//
// Why: on an idle node the kubelet still makes about fifteen small calls a
// second (relists, log-rotation status checks, stats). Each call readies
// three goroutines in turn (gRPC's reader, the handler, gRPC's writer), and
// with a second P idle the Go scheduler wakes another thread for each of
// them, which finds little to do and parks again. On the 2-vCPU VMs
// crishim is measured on, those wake-ups were about half of a call's CPU:
// with one P, the same goroutines run one after another on one thread. Under
// real work (pods starting, chatty logs, stats of hundreds of pods) a second
// CPU is worth far more than the wake-ups cost, so the governor restores the
// default the moment a call that does such work arrives, or when crishim's
// own CPU use shows work the calls do not announce.
package gomaxprocs

import (
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	// Quiet is how long crishim must have had no work before it lowers.
	// A burst of pod starts comes as many calls within seconds of each
	// other; ten seconds without any keeps it at the default throughout.
	Quiet = 10 * time.Second
	// SampleEvery is how often crishim's CPU time is read.
	SampleEvery = time.Second
	// BusyShare is the share of one CPU, over one sample, that counts as
	// work: idle crishim uses about 1% of one at 100 pods.
	BusyShare = 0.25
)

// Governor switches GOMAXPROCS between a low value while idle and the
// runtime's default. Its zero value is not usable; see New.
type Governor struct {
	idle  int
	quiet time.Duration
	now   func() time.Time
	cpu   func() time.Duration
	// set applies a GOMAXPROCS; 0 restores the runtime's default.
	set func(n int)
	// current reports the GOMAXPROCS in force.
	current func() int

	// base makes times monotonic offsets: a step of the wall clock must
	// neither lower GOMAXPROCS early nor keep it up.
	base     time.Time
	lastWork atomic.Int64 // the last Kick, in nanoseconds since base
	lowered  atomic.Bool
	mu       sync.Mutex // serialises set and lowered's changes
}

// New returns a governor for the real runtime that lowers GOMAXPROCS to
// idle after Quiet without work. It returns nil, a valid no-op governor,
// when idle is 0 or the environment sets GOMAXPROCS: an operator who
// fixed it keeps it.
func New(idle int) *Governor {
	if _, set := os.LookupEnv("GOMAXPROCS"); idle <= 0 || set {
		return nil
	}
	return newGovernor(idle, Quiet, time.Now, processCPU, func(n int) {
		if n == 0 {
			runtime.SetDefaultGOMAXPROCS()
			return
		}
		runtime.GOMAXPROCS(n)
	}, func() int { return runtime.GOMAXPROCS(0) })
}

func newGovernor(idle int, quiet time.Duration, now func() time.Time, cpu func() time.Duration, set func(int), current func() int) *Governor {
	return &Governor{idle: idle, quiet: quiet, now: now, cpu: cpu, set: set, current: current, base: now()}
}

// since is the time since the last Kick.
func (g *Governor) since() time.Duration {
	return g.now().Sub(g.base) - time.Duration(g.lastWork.Load())
}

// Kick reports work: GOMAXPROCS goes back to the default before the work
// runs, and stays there for at least Quiet. It is cheap (a clock read and
// an atomic store) when nothing changes.
func (g *Governor) Kick() {
	if g == nil {
		return
	}
	g.lastWork.Store(int64(g.now().Sub(g.base)))
	if !g.lowered.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lowered.Load() {
		g.set(0)
		g.lowered.Store(false)
		logrus.WithField("gomaxprocs", g.current()).Debug("work arrived: GOMAXPROCS back to the default")
	}
}

// Run samples crishim's CPU time every SampleEvery until ctx is done, and
// restores the default when it returns.
func (g *Governor) Run(ctx context.Context) {
	if g == nil {
		return
	}
	logrus.WithFields(logrus.Fields{"idle": g.idle, "default": g.current()}).Info("GOMAXPROCS is lowered while crishim is idle")
	t := time.NewTicker(SampleEvery)
	defer t.Stop()
	lastCPU, lastAt := g.cpu(), g.now()
	for {
		select {
		case <-ctx.Done():
			g.Kick()
			return
		case <-t.C:
		}
		cpu, at := g.cpu(), g.now()
		g.sample(cpu-lastCPU, at.Sub(lastAt))
		lastCPU, lastAt = cpu, at
	}
}

// sample takes the CPU crishim used over the last wall interval: enough of
// it is work (log copying, stats, streams: nothing a call announces); none
// for Quiet lowers GOMAXPROCS.
func (g *Governor) sample(used, wall time.Duration) {
	if wall > 0 && float64(used) >= BusyShare*float64(wall) {
		g.Kick()
		return
	}
	if g.lowered.Load() || g.since() < g.quiet {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lowered.Load() || g.current() <= g.idle {
		return
	}
	// Marked lowered before lastWork is read again: a Kick that stored its
	// time after that read sees the mark and raises again behind this lock,
	// and one that stored it before is seen here.
	g.lowered.Store(true)
	if g.since() < g.quiet {
		g.lowered.Store(false)
		return
	}
	g.set(g.idle)
	logrus.WithField("gomaxprocs", g.idle).Debug("idle: GOMAXPROCS lowered")
}

// processCPU is the user and system CPU time of all of crishim's threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
