// Command crishim-bench runs identical CRI workloads against two runtimes,
// interleaved, and prints a table of their ratios. Without --a and --b it
// builds its own world (see bench.SetupEnv): containerd with its CRI
// plugin as A and crishim on the same containerd as B.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crishim/crishim/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crishim-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg         bench.Config
		out         = flag.String("out", "", "also write the tables (Markdown) to this file, each replacing its own section (the CRI rounds', the scale round's) and nothing else")
		repo        = flag.String("repo", ".", "crishim repository (builds crishim and pause)")
		binary      = flag.String("crishim", "", "crishim binary to run (empty: build it)")
		profile     = flag.String("cpuprofile", "", "write a CPU profile of crishim, taken from the first B round on (with -scale-only: from B's timed calls on), to this file")
		trace       = flag.String("trace", "", "write a Go execution trace of crishim over the same window as -cpuprofile (scheduling waits, GC, syscalls per request) to this file")
		profileSecs = flag.Int("profile-seconds", 30, "length of the -cpuprofile profile and the -trace trace")
		heapProfile = flag.String("heapprofile", "", "write crishim's heap profile, taken with the density pods running (with -scale-only: the scale round's, after its calls), to this file")
		quick       = flag.Bool("quick", false, "small rounds unless set otherwise: 10 lifecycles, 16 at c=8, 2 ignorer stops, 20 pods for density")
		a           = flag.String("a", "", "socket of endpoint A (external mode; needs -b)")
		b           = flag.String("b", "", "socket of endpoint B (external mode)")
		aPID        = flag.Int("a-pid", 0, "external mode: PID serving A")
		bPID        = flag.Int("b-pid", 0, "external mode: PID serving B")
		ctrdPID     = flag.Int("containerd-pid", 0, "external mode: PID of the containerd behind both")
		aNS         = flag.String("a-namespace", bench.NamespaceContainerdCRI, "external mode: containerd namespace of A's pods")
		bNS         = flag.String("b-namespace", "crishim", "external mode: containerd namespace of B's pods")
		image       = flag.String("image", "", "external mode: container image with sh and sleep")
		pause       = flag.String("sandbox-image", "", "external mode: pause image to pull into both beforehand")
		logDir      = flag.String("log-dir", "", "external mode: directory for pod logs")
		keep        = flag.Bool("keep-logs", false, "keep the daemons' logs (under /var/tmp/crishim-bench-*/logs) after a successful run")
	)
	flag.IntVar(&cfg.Rounds, "rounds", 4, "rounds per endpoint, interleaved A B B A ...")
	flag.IntVar(&cfg.Pods, "pods", 20, "full lifecycles per round at concurrency 1")
	flag.IntVar(&cfg.ConcurrentPods, "concurrent-pods", 32, "full lifecycles per round at -concurrency")
	flag.IntVar(&cfg.Concurrency, "concurrency", 8, "parallel lifecycles in the concurrent part")
	flag.IntVar(&cfg.IgnorerStops, "ignorer-stops", 3, "SIGTERM-ignoring containers stopped per round")
	flag.Int64Var(&cfg.StopTimeout, "stop-timeout", 2, "StopContainer timeout (s) for the SIGTERM ignorer")
	flag.IntVar(&cfg.DensityPods, "density", 100, "running pods at which RSS is measured (0: skip)")
	flag.IntVar(&cfg.ScalePods, "scale", 0, "scale round: this many running pods per endpoint, fewer if memory or pids do not allow (0: skip)")
	flag.IntVar(&cfg.ScaleQueries, "scale-queries", 200, "scale round: timed rounds of ListPodSandbox, ListContainers, ContainerStatus and ListContainerStats")
	flag.BoolVar(&cfg.ScaleOnly, "scale-only", false, "run only the scale round (no lifecycle rounds, no density)")
	flag.StringVar(&cfg.ScaleSides, "scale-sides", "AB", "endpoints the scale round runs on: AB, A or B")
	flag.DurationVar(&cfg.ScaleSettle, "scale-settle", time.Minute, "scale round: longest wait after the starts for a second with the machine's CPUs under half busy before the calls are timed (0: none)")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*int{"pods": &cfg.Pods, "concurrent-pods": &cfg.ConcurrentPods, "ignorer-stops": &cfg.IgnorerStops, "density": &cfg.DensityPods} {
			if !set[name] {
				*v = map[string]int{"pods": 10, "concurrent-pods": 16, "ignorer-stops": 2, "density": 20}[name]
			}
		}
	}
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var env *bench.Env
	// The logs go with the rest unless the run fails.
	keepLogs := true
	switch {
	case *a != "" && *b != "":
		cfg.A = bench.Endpoint{Name: "A", Socket: *a, PID: *aPID, ShimNamespace: *aNS}
		cfg.B = bench.Endpoint{Name: "B", Socket: *b, PID: *bPID, ShimNamespace: *bNS}
		cfg.ContainerdPID, cfg.Image, cfg.SandboxImage = *ctrdPID, *image, *pause
		if cfg.Image == "" || *logDir == "" {
			return fmt.Errorf("external mode needs -image and -log-dir")
		}
		cfg.LogDir = *logDir
	case *a != "" || *b != "":
		return fmt.Errorf("give both -a and -b, or neither")
	default:
		root, err := filepath.Abs(*repo)
		if err != nil {
			return err
		}
		env, err = bench.SetupEnv(bench.EnvOptions{RepoRoot: root, CrishimBinary: *binary, Progress: os.Stderr, Profiling: *profile != "" || *trace != "" || *heapProfile != ""})
		if err != nil {
			return err
		}
		defer func() {
			if err := env.Teardown(keepLogs); err != nil {
				fmt.Fprintln(os.Stderr, "crishim-bench: teardown:", err)
			}
		}()
		cfg.A, cfg.B = env.Endpoints()
		cfg.ContainerdPID = env.Containerd.Pid()
		cfg.Image, cfg.SandboxImage = env.Image, env.SandboxImage
		cfg.LogDir = filepath.Join(env.Dir, "pods")
		cfg.Leaks = env.Leaks
		cfg.ScaleAddresses = env.PodAddresses()
		fmt.Fprintf(os.Stderr, "environment in %s\n", env.Dir)
		if env.DebugAddress != "" {
			fmt.Fprintf(os.Stderr, "crishim pprof on http://%s/debug/pprof/\n", env.DebugAddress)
		}
		if *heapProfile != "" {
			heap := func(side string) {
				if side != "B" {
					return
				}
				if err := env.HeapProfile(*heapProfile); err != nil {
					fmt.Fprintln(os.Stderr, "crishim-bench: heap profile:", err)
				}
			}
			// Density does not run with -scale-only; then the scale
			// round's pods are the ones the profile is taken with.
			if cfg.ScaleOnly {
				cfg.AtScale = heap
			} else {
				cfg.AtDensity = heap
			}
		}
		if *profile != "" || *trace != "" {
			started := false
			var wg sync.WaitGroup
			fetch := func(path, what string, get func(string, int) error) {
				if path == "" {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := get(path, *profileSecs); err != nil {
						fmt.Fprintf(os.Stderr, "crishim-bench: %s: %v\n", what, err)
					}
				}()
			}
			startProfile := func(side string) {
				if side != "B" || started {
					return
				}
				started = true
				fetch(*profile, "cpu profile", env.CPUProfile)
				fetch(*trace, "trace", env.Trace)
			}
			cfg.Between = func(side string, _ int) { startProfile(side) }
			cfg.BeforeScaleQueries = startProfile
			// crishim must outlive the profile it is asked for.
			defer wg.Wait()
		}
	}

	report, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	keepLogs = *keep
	header := fmt.Sprintf("crishim-bench, %s, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	// Each table is its own section of -out, so a run leaves the other's
	// last results in place.
	type section struct{ name, text string }
	var sections []section
	if !cfg.ScaleOnly {
		sections = append(sections, section{"cri", header + report.Table().Markdown()})
	}
	if scale, ok := report.ScaleTable(); ok {
		sections = append(sections, section{"scale", header + scale.Markdown()})
	}
	for i, sec := range sections {
		if i > 0 {
			fmt.Println()
		}
		fmt.Print(sec.text)
		if *out != "" {
			if err := bench.WriteSection(*out, sec.name, sec.text); err != nil {
				return err
			}
		}
	}
	return nil
}

// machine describes the host in a few words, for the table's header.
func machine() string {
	cpus := 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(data), "\nprocessor\t") + 1
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			load = ", load average " + f[0] + " at the end"
		}
	}
	return fmt.Sprintf("%d CPUs%s", cpus, load)
}
