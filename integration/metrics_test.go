//go:build linux

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// freePort returns a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d, %v: %.300s", url, resp.StatusCode, err, body)
	}
	return string(body)
}

// sample is the value of one sample line in a Prometheus text scrape, or
// -1 when the series is absent.
func sample(scrape, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// startOwnCrishim starts a crishim of the test's own on the suite's
// containerd, in a containerd namespace of its own (so that what it counts
// is the test's alone), with extraArgs; it is stopped when the test ends.
func startOwnCrishim(t *testing.T, name string, extraArgs ...string) (cr *testenv.Crishim, logPath string) {
	t.Helper()
	e := needEnv(t)
	shared, err := e.Crishim()
	if err != nil {
		t.Fatalf("crishim is not running: %v", err)
	}
	dir, err := os.MkdirTemp(e.Dir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	// A namespace of this run's own: content already in it is not fetched
	// again, and a pull must fetch to be counted.
	ns := fmt.Sprintf("crishim-it-%s-%d", name, time.Now().UnixNano())
	logPath = filepath.Join(e.LogDir, "crishim-"+name+".log")
	cr, err = testenv.StartCrishim(testenv.CrishimConfig{
		Binary:              shared.Binary(),
		Dir:                 dir,
		ContainerdAddress:   e.Containerd.Address,
		ContainerdNamespace: ns,
		Root:                filepath.Join(dir, "root"),
		State:               filepath.Join(dir, "state"),
		CNIConfDir:          e.Network.ConfDir,
		RegistryConfigDir:   e.RegistryConfigDir,
		LogPath:             logPath,
		ExtraArgs:           extraArgs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cr.Stop(); err != nil {
			t.Errorf("stop crishim: %v", err)
		}
		_ = os.Remove(filepath.Join("/run/containerd/runc", ns))
	})
	return cr, logPath
}

// TestMetrics runs a crishim of its own (its own containerd namespace, so
// that the counts are exactly this test's) with metrics and pprof on, and
// follows one pod and container through the metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := needEnv(t)
	metricsPort, debugPort := freePort(t), freePort(t)
	// Without a host the address binds loopback.
	cr, _ := startOwnCrishim(t, "metrics", "--metrics-address", fmt.Sprintf(":%d", metricsPort), "--debug-address", fmt.Sprintf(":%d", debugPort))
	conn, err := testenv.Dial(cr.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt, img := runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	before := httpGet(t, metricsURL)
	if v := sample(before, `crishim_grpc_requests_total{code="OK",rpc="RunPodSandbox"}`); v > 0 {
		t.Fatalf("RunPodSandbox counted %v before any pod", v)
	}
	if v := sample(before, `crishim_pods{state="ready"}`); v != 0 {
		t.Fatalf("ready pods before any pod = %v, want 0", v)
	}

	if _, err := img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: e.BusyboxImage}}); err != nil {
		t.Fatalf("pull: %v", err)
	}
	podCfg := podConfig(t, "metrics")
	pod, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	podID := pod.PodSandboxId
	removed := false
	t.Cleanup(func() {
		if removed {
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if _, err := rt.StopPodSandbox(cctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("cleanup: stop pod: %v", err)
		}
		if _, err := rt.RemovePodSandbox(cctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("cleanup: remove pod: %v", err)
		}
	})

	ctrCfg := containerConfig("idle", e.BusyboxImage, idleCmd...)
	created, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}

	running := httpGet(t, metricsURL)
	for series, want := range map[string]float64{
		`crishim_grpc_requests_total{code="OK",rpc="RunPodSandbox"}`:                     1,
		`crishim_grpc_request_duration_seconds_count{rpc="RunPodSandbox"}`:               1,
		`crishim_pods{state="ready"}`:                                                    1,
		`crishim_pods{state="notready"}`:                                                 0,
		`crishim_containers{state="running"}`:                                            1,
		`crishim_cni_operation_duration_seconds_count{operation="setup",result="ok"}`:    1,
		`crishim_image_pull_duration_seconds_count{result="ok"}`:                         1,
		`crishim_grpc_requests_total{code="OK",rpc="PullImage"}`:                         1,
		`crishim_container_stops_total{outcome="graceful"}`:                              0,
		`crishim_cni_operation_duration_seconds_count{operation="teardown",result="ok"}`: -1,
		`crishim_grpc_requests_total{code="NotFound",rpc="ContainerStatus"}`:             -1,
		// The pause task and the container's: one create and one start each.
		`crishim_containerd_requests_total{code="OK",method="tasks.v1.Tasks/Create"}`: 2,
		`crishim_containerd_requests_total{code="OK",method="tasks.v1.Tasks/Start"}`:  2,
	} {
		if got := sample(running, series); got != want {
			t.Errorf("with the pod running: %s = %v, want %v", series, got, want)
		}
	}
	// The busybox image came from the registry: its layer and config at least.
	if got := sample(running, "crishim_image_pull_bytes_total"); got < 100_000 {
		t.Errorf("crishim_image_pull_bytes_total = %v after pulling busybox", got)
	}

	// Errors are counted by their gRPC code.
	if _, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "0123456789abcdef"}); err == nil {
		t.Fatal("ContainerStatus of an unknown container succeeded")
	}
	if _, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: created.ContainerId, Timeout: 30}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}

	// The stop outcome is counted by the stop loop right after the exit
	// that StopContainer returned on: poll for it.
	var stopped string
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped = httpGet(t, metricsURL)
		if sample(stopped, `crishim_container_stops_total{outcome="graceful"}`) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for series, want := range map[string]float64{
		`crishim_container_stops_total{outcome="graceful"}`:                              1,
		`crishim_container_stops_total{outcome="killed"}`:                                0,
		`crishim_pods{state="ready"}`:                                                    0,
		`crishim_pods{state="notready"}`:                                                 1,
		`crishim_containers{state="exited"}`:                                             1,
		`crishim_cni_operation_duration_seconds_count{operation="teardown",result="ok"}`: 1,
		`crishim_grpc_requests_total{code="NotFound",rpc="ContainerStatus"}`:             1,
	} {
		if got := sample(stopped, series); got != want {
			t.Errorf("after stopping: %s = %v, want %v", series, got, want)
		}
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	removed = true

	// pprof answers on the debug address, on loopback.
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/cmdline", debugPort)); body == "" {
		t.Error("pprof cmdline is empty")
	}
}

// TestIdleGOMAXPROCS runs a crishim of its own with nothing to do: after
// its quiet period it runs Go on one P while the calls are only the reads
// an idle kubelet makes, and has the default back by the time a call that
// is work returns.
func TestIdleGOMAXPROCS(t *testing.T) {
	t.Parallel()
	metricsPort := freePort(t)
	cr, logPath := startOwnCrishim(t, "gomaxprocs", "--metrics-address", fmt.Sprintf(":%d", metricsPort), "--log-level", "debug")
	conn, err := testenv.Dial(cr.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	def := sample(httpGet(t, metricsURL), "crishim_gomaxprocs")
	if def < 2 {
		t.Fatalf("crishim_gomaxprocs = %v right after the start: want the default of a machine with 2 CPUs or more", def)
	}
	// The kubelet's idle reads, every 100 ms, do not hold the default.
	// The metric is read once a second: a scrape costs a race-built
	// crishim more CPU than the reads, and scraping every 100 ms kept it
	// near the governor's busy share on a slow machine.
	deadline := time.Now().Add(time.Minute)
	for i := 0; i%10 != 0 || sample(httpGet(t, metricsURL), "crishim_gomaxprocs") != 1; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("crishim_gomaxprocs still %v a minute into idle reads; see %s", sample(httpGet(t, metricsURL), "crishim_gomaxprocs"), logPath)
		}
		if _, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
			t.Fatalf("ListPodSandbox: %v", err)
		}
		if _, err := rt.Version(ctx, &runtime.VersionRequest{}); err != nil {
			t.Fatalf("Version: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Removing a pod that does not exist succeeds, and is work.
	if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: strings.Repeat("0a", 32)}); err != nil {
		t.Fatalf("RemovePodSandbox of an unknown pod: %v", err)
	}
	if got := sample(httpGet(t, metricsURL), "crishim_gomaxprocs"); got != def {
		t.Fatalf("crishim_gomaxprocs = %v after RemovePodSandbox, want the default %v", got, def)
	}
}
