//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// Runtime is one side of a kubelet A/B measurement: the CRI socket a
// kubelet is pointed at and the processes whose cost is the runtime's.
type Runtime struct {
	Label  string // column heading
	Socket string
	// Procs are the runtime's own processes by name (A: containerd; B:
	// crishim and containerd); shims, runc and CNI are counted apart.
	Procs func() map[string]int
	Shims func() []int
	// Metrics scrapes the runtime's Prometheus endpoint; RPCs and Backend
	// name the counters of CRI calls by method and of containerd round
	// trips (none for A: containerd is its own backend).
	Metrics      func() (map[string]float64, error)
	RPCs         func(before, after map[string]float64) map[string]float64
	BackendCalls func(before, after map[string]float64) map[string]float64
}

// criRef is containerd's own CRI plugin on a containerd of its own: the
// same binaries, runc, CNI plugins, registry and images as crishim's
// containerd, its pods on a CNI network of their own.
type criRef struct {
	c       *testenv.Containerd
	net     *testenv.Network
	runDir  string
	metrics string
}

// startCRIRef starts containerd with its CRI plugin next to the test
// environment and waits until the plugin reports runtime and network
// ready. It is stopped, its tasks killed and its network removed when the
// test ends.
func startCRIRef(t testing.TB) *Runtime {
	t.Helper()
	if err := env.PushPauseImage(); err != nil {
		t.Fatal(err)
	}
	r := &criRef{}
	t.Cleanup(func() {
		if err := r.teardown(); err != nil {
			t.Errorf("tear down containerd's CRI plugin: %v", err)
		}
	})
	var err error
	// The runc state goes to a tmpfs, as the default /run/containerd/runc
	// would, but one the machine's own containerd does not use.
	if r.runDir, err = os.MkdirTemp("/run", "crishim-e2e-cri-"); err != nil {
		t.Fatal(err)
	}
	for {
		if r.net, err = testenv.WriteNetwork(filepath.Join(env.Dir, fmt.Sprintf("cni-cri-%d", time.Now().UnixNano()))); err != nil {
			t.Fatal(err)
		}
		// The other bridge may not exist yet, so WriteNetwork cannot see
		// its subnet: compare here.
		if !r.net.Subnet.Contains(env.Network.Subnet.IP) && !env.Network.Subnet.Contains(r.net.Subnet.IP) && r.net.Bridge != env.Network.Bridge {
			break
		}
		_ = os.RemoveAll(r.net.ConfDir)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	r.metrics = "http://" + metricsAddr + "/v1/metrics"
	// The same image the alias names for crishim's sandboxes.
	sandboxImage := testenv.RegistryAlias + "/crishim/pause:it"
	r.c, err = testenv.StartContainerdWith(filepath.Join(env.Dir, "containerd-cri"), filepath.Join(env.LogDir, "containerd-cri.log"),
		testenv.ContainerdOptions{CRIConfig: testenv.CRIPlugin{SandboxImage: sandboxImage, CNIConfDir: r.net.ConfDir,
			RegistryConfigDir: env.RegistryConfigDir, RuncRoot: filepath.Join(r.runDir, "runc"), MetricsAddress: metricsAddr}.Config()})
	if err != nil {
		t.Fatalf("start containerd with its CRI plugin: %v", err)
	}
	err = testenv.Poll(30*time.Second, 100*time.Millisecond, "containerd's CRI plugin ready", func() (bool, error) {
		return criReady(r.c.Address)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, testenv.Tail(r.c.LogPath, 30))
	}
	return &Runtime{
		Label:   "A: containerd 1.6 CRI",
		Socket:  r.c.Address,
		Procs:   func() map[string]int { return map[string]int{"containerd": r.c.Pid()} },
		Shims:   r.c.Shims,
		Metrics: func() (map[string]float64, error) { return scrape(r.metrics) },
		RPCs: func(before, after map[string]float64) map[string]float64 {
			// go-grpc-prometheus counts every gRPC service containerd
			// serves; the CRI's are the kubelet's calls.
			out := map[string]float64{}
			for m, v := range deltaWhere(before, after, "grpc_server_handled_total", "grpc_method", `grpc_service="runtime.v1.RuntimeService"`) {
				out[m] += v
			}
			for m, v := range deltaWhere(before, after, "grpc_server_handled_total", "grpc_method", `grpc_service="runtime.v1.ImageService"`) {
				out[m] += v
			}
			return out
		},
		BackendCalls: func(before, after map[string]float64) map[string]float64 { return nil },
	}
}

// criReady reports whether the CRI runtime on socket says its runtime and
// network are ready.
func criReady(socket string) (bool, error) {
	conn, err := testenv.Dial(socket)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := runtime.NewRuntimeServiceClient(conn).Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		return false, err
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if !c.Status {
			return false, fmt.Errorf("condition %s: %s %s", c.Type, c.Reason, c.Message)
		}
	}
	return len(resp.GetStatus().GetConditions()) >= 2, nil
}

// teardown stops containerd (which kills the tasks left), removes the CNI
// network and every mount and file of the runtime's own.
func (r *criRef) teardown() error {
	var errs []error
	if r.c != nil {
		errs = append(errs, r.c.Stop())
	}
	if r.net != nil {
		errs = append(errs, r.net.Cleanup())
	}
	for _, d := range []string{r.runDir, filepath.Join(env.Dir, "containerd-cri")} {
		if d == "" {
			continue
		}
		mounts, err := testenv.MountsUnder(d)
		errs = append(errs, err)
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}

// crishimRuntime is the test environment's crishim, restarted with its
// metrics (and, for profiles, pprof) endpoints and info logs as a node
// runs it; it gets its usual flags back when the test ends.
func crishimRuntime(t testing.TB) (*Runtime, string) {
	t.Helper()
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
	pprofURL := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof", ports[1])
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
	return &Runtime{
		Label:  "B: crishim",
		Socket: crishim.Socket,
		Procs: func() map[string]int {
			return map[string]int{"crishim": crishim.Pid(), "containerd": env.Containerd.Pid()}
		},
		Shims:   env.Containerd.Shims,
		Metrics: func() (map[string]float64, error) { return scrape(metricsURL) },
		RPCs: func(before, after map[string]float64) map[string]float64 {
			return delta(before, after, "crishim_grpc_requests_total", "rpc")
		},
		BackendCalls: func(before, after map[string]float64) map[string]float64 {
			return delta(before, after, "crishim_containerd_requests_total", "method")
		},
	}, pprofURL
}

// prePull pulls the images the benchmark pods use into a runtime, so that
// no round measures a pull.
func prePull(t testing.TB, r *Runtime) {
	t.Helper()
	conn, err := testenv.Dial(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	is := runtime.NewImageServiceClient(conn)
	for _, img := range []string{env.BusyboxImage, testenv.RegistryAlias + "/crishim/pause:it"} {
		if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: img}}); err != nil {
			t.Fatalf("%s: pull %s: %v", r.Label, img, err)
		}
	}
}
