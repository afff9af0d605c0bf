package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Endpoint is one CRI runtime under test.
type Endpoint struct {
	Name string
	// Socket is the CRI unix socket.
	Socket string
	// PID is the process serving CRI, whose RSS and CPU are reported (for
	// containerd's CRI plugin: containerd itself). 0: not measured.
	PID int
	// ShimNamespace is the containerd namespace its pods live in, to find
	// their shims; ShimAddress, when set, the containerd socket they serve,
	// so that another containerd's shims in a namespace of the same name
	// (another test run's k8s.io) are not counted.
	ShimNamespace, ShimAddress string
}

// Config is one benchmark run.
type Config struct {
	A, B Endpoint
	// ContainerdPID is the containerd both endpoints use (0: unknown); its
	// CPU is reported for B's rounds too, as work B caused there.
	ContainerdPID int
	// Image runs the containers (needs sh, sleep, trap and wait);
	// SandboxImage is pulled beforehand so no round pays for a pull.
	Image, SandboxImage string
	// Rounds per endpoint, interleaved A B B A ...
	Rounds int
	// Pods is the number of lifecycles per round at concurrency 1,
	// ConcurrentPods the number at Concurrency.
	Pods, ConcurrentPods, Concurrency int
	// IgnorerStops is the number of SIGTERM-ignoring containers stopped
	// per round, with StopTimeout seconds of grace.
	IgnorerStops int
	StopTimeout  int64
	// DensityPods running pods (pause plus a sleeping container) at which
	// RSS is measured once per endpoint; 0 skips it.
	DensityPods int
	// LogDir holds the pods' log directories.
	LogDir   string
	Progress io.Writer
	// Between, when set, is called before each round (e.g. for profiling).
	Between func(side string, round int)
	// AtDensity, when set, is called while DensityPods pods run on side,
	// after the daemons were measured (e.g. for a heap profile).
	AtDensity func(side string)

	// ScalePods running pods (one container each) per endpoint for the
	// scale round, fewer if the machine cannot hold them (ScaleFit); 0
	// skips it. ScaleQueries rounds of the read-only calls are timed with
	// all of them running.
	ScalePods, ScaleQueries int
	// ScaleAddresses is how many pods each endpoint's CNI network can
	// address (0: unknown, no limit).
	ScaleAddresses int
	// ScaleOnly skips the lifecycle rounds and the density measurement.
	ScaleOnly bool
	// ScaleSides are the endpoints the scale round runs on, "AB" (the
	// default), "A" or "B": on a busy machine 2×500 pods take long.
	ScaleSides string
	// ScaleSettle bounds the wait, between the last start and the timed
	// calls, for the machine to settle: until a second passes with its
	// CPUs under half busy. The calls are meant to be timed on a node that
	// runs the pods, not on one still finishing their starts (shims, runc
	// and containerd exiting and settling); the table says how long it
	// took. 0: no wait.
	ScaleSettle time.Duration
	// BeforeScaleQueries, when set, is called on side just before the
	// scale round's calls are timed (e.g. to start a CPU profile).
	BeforeScaleQueries func(side string)
	// AtScale, when set, is called while the scale round's pods run on
	// side, after the calls were timed and the daemons measured.
	AtScale func(side string)
	// Leaks, when set, lists what side left in containerd, the mounts and
	// the network after its scale round removed every pod.
	Leaks func(side string) ([]string, error)
}

// sideResult is everything measured on one endpoint.
type sideResult struct {
	ep   Endpoint
	c    *client
	rpcs *recorder
	e2e  *recorder

	seqPods, concPods     int
	seqWall, concWall     time.Duration
	cpuServer, cpuBackend time.Duration
	cpuMachine            time.Duration
	lifecycles            int
	failures              int
	firstErr              error
	leftoverPods          []int
	leftoverCtrs          []int

	rssStart, rssEnd int64
	density          *densityResult
	scale            *scaleResult
}

type densityResult struct {
	pods                int
	rssBefore, rssAt    int64
	backendRSSBefore    int64
	backendRSSAt        int64
	shims               int
	shimRSS             int64
	startWall, stopWall time.Duration
	leftoverPods        int
	leftoverCtrs        int
}

func (r *sideResult) fail(err error) {
	r.failures++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// Report is a finished run.
type Report struct {
	cfg  Config
	a, b *sideResult
	took time.Duration
}

func dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
}

func (cfg *Config) defaults() {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 2
	}
	if cfg.Pods <= 0 {
		cfg.Pods = 20
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.ConcurrentPods <= 0 {
		cfg.ConcurrentPods = 2 * cfg.Pods
	}
	if cfg.ScaleQueries <= 0 {
		cfg.ScaleQueries = 200
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 2
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
}

// Run benchmarks A against B.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	started := time.Now()
	sides := map[string]*sideResult{}
	for key, ep := range map[string]Endpoint{"A": cfg.A, "B": cfg.B} {
		conn, err := dial(ep.Socket)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", ep.Name, err)
		}
		defer conn.Close()
		logDir := filepath.Join(cfg.LogDir, key)
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return nil, err
		}
		c := &client{conn: conn, rt: runtime.NewRuntimeServiceClient(conn), img: runtime.NewImageServiceClient(conn), logDir: logDir, image: cfg.Image}
		sides[key] = &sideResult{ep: ep, c: c, rpcs: newRecorder(), e2e: newRecorder()}
	}
	for key, s := range sides {
		if err := prepare(ctx, s.c, cfg); err != nil {
			return nil, fmt.Errorf("prepare %s (%s): %w", key, s.ep.Name, err)
		}
		if u, err := ReadUsage(s.ep.PID); err == nil {
			s.rssStart = u.RSS
		}
	}
	order := []string{"A", "B"}
	rounds := cfg.Rounds
	if cfg.ScaleOnly {
		rounds = 0
	}
	for round := 0; round < rounds; round++ {
		for _, key := range order {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fmt.Fprintf(cfg.Progress, "round %d/%d: %s (%s)\n", round+1, cfg.Rounds, key, sides[key].ep.Name)
			if cfg.Between != nil {
				cfg.Between(key, round)
			}
			runRound(sides[key], cfg, round)
		}
		order[0], order[1] = order[1], order[0]
	}
	if cfg.DensityPods > 0 && !cfg.ScaleOnly {
		for _, key := range []string{"A", "B"} {
			fmt.Fprintf(cfg.Progress, "density: %d running pods on %s (%s)\n", cfg.DensityPods, key, sides[key].ep.Name)
			runDensity(key, sides[key], cfg)
		}
	}
	if cfg.ScalePods > 0 {
		for _, key := range []string{"A", "B"} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if cfg.ScaleSides != "" && !strings.Contains(cfg.ScaleSides, key) {
				continue
			}
			fmt.Fprintf(cfg.Progress, "scale: %d running pods on %s (%s)\n", cfg.ScalePods, key, sides[key].ep.Name)
			runScale(key, sides[key], cfg)
		}
	}
	for _, s := range sides {
		if u, err := ReadUsage(s.ep.PID); err == nil {
			s.rssEnd = u.RSS
		}
	}
	return &Report{cfg: cfg, a: sides["A"], b: sides["B"], took: time.Since(started)}, nil
}

// prepare pulls the images and runs two untimed lifecycles so that
// neither endpoint pays for first-use work inside a round.
func prepare(ctx context.Context, c *client, cfg Config) error {
	for _, ref := range []string{cfg.Image, cfg.SandboxImage} {
		if ref == "" {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := c.img.PullImage(pctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
		cancel()
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := c.lifecycle(fmt.Sprintf("warmup-%d", i), nil, nil, "", ""); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

func runRound(s *sideResult, cfg Config, round int) {
	before, _ := ReadUsage(s.ep.PID)
	backendBefore, _ := ReadUsage(cfg.ContainerdPID)
	machineBefore, _ := MachineCPU()

	start := time.Now()
	for i := 0; i < cfg.Pods; i++ {
		if err := s.c.lifecycle(fmt.Sprintf("seq-%d-%d", round, i), s.rpcs, s.e2e, mToRunning, mLifecycle); err != nil {
			s.fail(err)
		}
	}
	s.seqWall += time.Since(start)
	s.seqPods += cfg.Pods

	for i := 0; i < cfg.IgnorerStops; i++ {
		if err := stopIgnorer(s, cfg, fmt.Sprintf("ign-%d-%d", round, i)); err != nil {
			s.fail(err)
		}
	}

	start = time.Now()
	err := parallel(cfg.ConcurrentPods, cfg.Concurrency, func(i int) error {
		err := s.c.lifecycle(fmt.Sprintf("par-%d-%d", round, i), nil, s.e2e, mToRunningC8, mLifecycleC8)
		if err != nil {
			s.fail(err)
		}
		return err
	})
	_ = err // counted per lifecycle above
	s.concWall += time.Since(start)
	s.concPods += cfg.ConcurrentPods

	after, _ := ReadUsage(s.ep.PID)
	backendAfter, _ := ReadUsage(cfg.ContainerdPID)
	machineAfter, _ := MachineCPU()
	s.cpuServer += after.CPU - before.CPU
	s.cpuMachine += machineAfter - machineBefore
	s.cpuBackend += backendAfter.CPU - backendBefore.CPU
	s.lifecycles += cfg.Pods + cfg.IgnorerStops + cfg.ConcurrentPods

	pods, ctrs, err := s.c.leftovers()
	if err != nil {
		s.fail(err)
	}
	s.leftoverPods = append(s.leftoverPods, pods)
	s.leftoverCtrs = append(s.leftoverCtrs, ctrs)
}

// stopIgnorer times StopContainer(T) on a container that ignores SIGTERM
// and records how far past T it returned.
func stopIgnorer(s *sideResult, cfg Config, name string) error {
	p, err := s.c.startPod(name, ignorerScript, nil, nil, "")
	if err != nil {
		s.c.discard(p)
		return err
	}
	defer func() {
		if err := s.c.stopPod(runningPod{podID: p.podID, ctrID: p.ctrID}, 0, nil); err != nil {
			s.fail(err)
			s.c.discard(p)
		}
	}()
	// The shell must have installed its trap before the signal comes.
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	start := time.Now()
	if _, err := s.c.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: p.ctrID, Timeout: cfg.StopTimeout}); err != nil {
		return fmt.Errorf("StopContainer(T=%d): %w", cfg.StopTimeout, err)
	}
	s.e2e.add(mIgnorerExcess, time.Since(start)-time.Duration(cfg.StopTimeout)*time.Second)
	return nil
}

// runDensity starts DensityPods pods with a sleeping container each,
// measures the daemons and the shims, and removes them again.
func runDensity(side string, s *sideResult, cfg Config) {
	d := &densityResult{pods: cfg.DensityPods}
	s.density = d
	if u, err := ReadUsage(s.ep.PID); err == nil {
		d.rssBefore = u.RSS
	}
	if u, err := ReadUsage(cfg.ContainerdPID); err == nil {
		d.backendRSSBefore = u.RSS
	}
	pods := make([]runningPod, cfg.DensityPods)
	start := time.Now()
	_ = parallel(cfg.DensityPods, cfg.Concurrency, func(i int) error {
		p, err := s.c.startPod(fmt.Sprintf("dense-%d", i), cooperativeScript, nil, nil, "")
		pods[i] = p
		if err != nil {
			s.fail(err)
		}
		return err
	})
	d.startWall = time.Since(start)
	// Let the daemons settle (goroutines of the starts finish, caches
	// fill) before sampling; RSS is a level, not a rate.
	time.Sleep(2 * time.Second)
	if u, err := ReadUsage(s.ep.PID); err == nil {
		d.rssAt = u.RSS
	}
	if u, err := ReadUsage(cfg.ContainerdPID); err == nil {
		d.backendRSSAt = u.RSS
	}
	d.shims, d.shimRSS = ShimUsage(s.ep.ShimNamespace, s.ep.ShimAddress)
	if cfg.AtDensity != nil {
		cfg.AtDensity(side)
	}
	start = time.Now()
	_ = parallel(len(pods), cfg.Concurrency, func(i int) error {
		if err := s.c.stopPod(pods[i], cooperativeTimeout, nil); err != nil {
			s.fail(err)
			s.c.discard(pods[i])
			return err
		}
		return nil
	})
	d.stopWall = time.Since(start)
	var err error
	if d.leftoverPods, d.leftoverCtrs, err = s.c.leftovers(); err != nil {
		s.fail(err)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func perSecond(n int, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(n) / wall.Seconds()
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// Table turns the report into the ratio table with the targets.
func (r *Report) Table() Table {
	a, b := r.a, r.b
	t := Table{
		Title: fmt.Sprintf("%d rounds per endpoint (interleaved A B B A …); per round %d lifecycles at c=1, %d at c=%d, %d SIGTERM-ignoring stops; run took %s",
			r.cfg.Rounds, r.cfg.Pods, r.cfg.ConcurrentPods, r.cfg.Concurrency, r.cfg.IgnorerStops, r.took.Round(time.Second)),
		NameA: a.ep.Name, NameB: b.ep.Name,
	}
	for _, m := range []string{mRunPod, mCreate, mStart, mStatus, mListPods, mStop, mRemove, mStopPod, mRemovePod} {
		name := m
		if m == mStop {
			name = fmt.Sprintf("StopContainer (exits on SIGTERM, T=%d)", cooperativeTimeout)
		}
		t.Rows = append(t.Rows, LatencyRow(name, Summarize(a.rpcs.get(m)), Summarize(b.rpcs.get(m))))
	}
	toRunA, toRunB := Summarize(a.e2e.get(mToRunning)), Summarize(b.e2e.get(mToRunning))
	t.Rows = append(t.Rows,
		LatencyRow(mToRunning+" at c=1", toRunA, toRunB),
		LatencyRow(mLifecycle+" at c=1", Summarize(a.e2e.get(mLifecycle)), Summarize(b.e2e.get(mLifecycle))),
		LatencyRow(mToRunningC8, Summarize(a.e2e.get(mToRunningC8)), Summarize(b.e2e.get(mToRunningC8))),
		LatencyRow(mLifecycleC8, Summarize(a.e2e.get(mLifecycleC8)), Summarize(b.e2e.get(mLifecycleC8))),
	)
	rate1A, rate1B := perSecond(a.seqPods, a.seqWall), perSecond(b.seqPods, b.seqWall)
	rate8A, rate8B := perSecond(a.concPods, a.concWall), perSecond(b.concPods, b.concWall)
	t.Rows = append(t.Rows,
		ValueRow("full lifecycles per second at c=1", "%.2f", rate1A, rate1B),
		ValueRow(fmt.Sprintf("full lifecycles per second at c=%d", r.cfg.Concurrency), "%.2f", rate8A, rate8B),
	)
	ignA, ignB := Summarize(a.e2e.get(mIgnorerExcess)), Summarize(b.e2e.get(mIgnorerExcess))
	t.Rows = append(t.Rows, LatencyRow(fmt.Sprintf("StopContainer(T=%d) of a SIGTERM ignorer: time past T", r.cfg.StopTimeout), ignA, ignB))

	cpuPer := func(s *sideResult, d time.Duration) float64 {
		if s.lifecycles == 0 {
			return 0
		}
		return float64(d) / float64(time.Millisecond) / float64(s.lifecycles)
	}
	t.Rows = append(t.Rows,
		ValueRow("CPU ms per lifecycle: the CRI server process (A: containerd, B: crishim)", "%.1f", cpuPer(a, a.cpuServer), cpuPer(b, b.cpuServer)),
		ValueRow("CPU ms per lifecycle: containerd + crishim (everything but shims, runc, CNI)", "%.1f", cpuPer(a, a.cpuBackend), cpuPer(b, b.cpuBackend+b.cpuServer)),
		ValueRow("CPU ms per lifecycle: the whole machine (shims, runc, CNI, kernel and this client too)", "%.1f", cpuPer(a, a.cpuMachine), cpuPer(b, b.cpuMachine)),
		ValueRow("RSS MiB of the CRI server process after the rounds", "%.1f", mib(a.rssEnd), mib(b.rssEnd)),
	)
	if da, db := a.density, b.density; da != nil && db != nil {
		t.Rows = append(t.Rows,
			ValueRow(fmt.Sprintf("RSS MiB of the CRI server process with %d running pods", da.pods), "%.1f", mib(da.rssAt), mib(db.rssAt)),
			ValueRow(fmt.Sprintf("containerd RSS growth MiB for %d running pods", da.pods), "%.1f", mib(da.backendRSSAt-da.backendRSSBefore), mib(db.backendRSSAt-db.backendRSSBefore)),
			ValueRow(fmt.Sprintf("shims for %d pods (one container each)", da.pods), "%.0f", float64(da.shims), float64(db.shims)),
			ValueRow(fmt.Sprintf("shim RSS MiB, total, %d pods", da.pods), "%.0f", mib(da.shimRSS), mib(db.shimRSS)),
			ValueRow(fmt.Sprintf("seconds to start %d pods at c=%d", da.pods, r.cfg.Concurrency), "%.1f", da.startWall.Seconds(), db.startWall.Seconds()),
			ValueRow(fmt.Sprintf("seconds to stop and remove %d pods at c=%d", da.pods, r.cfg.Concurrency), "%.1f", da.stopWall.Seconds(), db.stopWall.Seconds()),
		)
	}
	left := func(s *sideResult) string {
		out := fmt.Sprintf("%d pods, %d containers", sum(s.leftoverPods), sum(s.leftoverCtrs))
		if s.density != nil {
			out += fmt.Sprintf(" (+ %d, %d after density)", s.density.leftoverPods, s.density.leftoverCtrs)
		}
		return out
	}
	t.Rows = append(t.Rows,
		TextRow("leftovers listed after the rounds (sum over rounds)", left(a), left(b)),
		TextRow("failed operations", fmt.Sprint(a.failures), fmt.Sprint(b.failures)),
	)

	// The targets.
	r1 := Ratio(float64(toRunA.P50), float64(toRunB.P50))
	t.Targets = append(t.Targets, TargetResult{
		Name: "time to a running pod at c=1 (p50, B/A)", Want: "≤ 0.70",
		Measured: ratioString(r1), Met: !math.IsNaN(r1) && r1 <= 0.7,
	})
	r8 := Ratio(rate8A, rate8B)
	t.Targets = append(t.Targets, TargetResult{
		Name: fmt.Sprintf("full lifecycles per second at c=%d (B/A)", r.cfg.Concurrency), Want: "≥ 1.30",
		Measured: ratioString(r8), Met: !math.IsNaN(r8) && r8 >= 1.3,
	})
	t.Targets = append(t.Targets, TargetResult{
		Name: fmt.Sprintf("StopContainer(T=%d), SIGTERM ignorer, B", r.cfg.StopTimeout), Want: "within T + 50 ms (worst case)",
		Measured: fmt.Sprintf("T + %s ms worst, T + %s ms p50 (%d stops)", ms(ignB.Max), ms(ignB.P50), ignB.N),
		Met:      ignB.N > 0 && ignB.Max <= 50*time.Millisecond,
	})
	stopA, stopB := Summarize(a.rpcs.get(mStop)), Summarize(b.rpcs.get(mStop))
	rs := Ratio(float64(stopA.P50), float64(stopB.P50))
	t.Targets = append(t.Targets, TargetResult{
		Name: "StopContainer, cooperative container (p50, B/A)", Want: "≤ 1.00",
		Measured: ratioString(rs), Met: !math.IsNaN(rs) && rs <= 1.0,
	})
	if db := b.density; db != nil {
		t.Targets = append(t.Targets, TargetResult{
			Name: fmt.Sprintf("crishim RSS with %d running pods (pause + sleeping container each)", db.pods), Want: "≤ 40 MiB",
			Measured: fmt.Sprintf("%.1f MiB", mib(db.rssAt)), Met: db.rssAt > 0 && db.rssAt <= 40<<20,
		})
	}
	if a.firstErr != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("first failure on A: %v", a.firstErr))
	}
	if b.firstErr != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("first failure on B: %v", b.firstErr))
	}
	return t
}
