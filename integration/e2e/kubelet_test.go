//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crishim/crishim/integration/testenv"
	"github.com/crishim/crishim/internal/cgroup"
)

// Kubelet is a kubelet running against the test environment's crishim.
type Kubelet struct {
	Dir         string // root dir, config, manifests
	ManifestDir string // static pods
	PodLogDir   string
	CgroupRoot  string // relative to each hierarchy
	ReadOnly    int    // read-only port: /pods, /healthz
	Port        int    // the authenticated (here: anonymous) server: logs, exec
	NodeName    string
	// Address is where the kubelet's servers listen: 127.0.0.1 standalone;
	// in a cluster the node's IP, which the API server dials for logs and
	// exec and which the kubelet refuses to be a loopback address.
	Address string
	LogPath string
	// Endpoint is the CRI socket the kubelet talks to.
	Endpoint string
	d        *testenv.Daemon
	stopOnce sync.Once
}

// KubeletOptions vary a kubelet between suites.
type KubeletOptions struct {
	Name         string         // directory and cgroup root name
	Endpoint     string         // CRI socket; empty: the test environment's crishim
	EventedPLEG  bool           // the EventedPLEG feature gate
	Kubeconfig   string         // empty: standalone
	ExtraConfig  map[string]any // merged into the KubeletConfiguration
	ExtraFlags   []string
	FeatureGates map[string]bool
}

// The kubelet rewrites these on start (setupKernelTunables); the harness
// puts them back when the suite ends.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

var (
	savedMu      sync.Mutex
	savedSysctls map[string][]byte
	cgroupRoots  []string
)

func saveSysctls() error {
	savedMu.Lock()
	defer savedMu.Unlock()
	if savedSysctls != nil {
		return nil
	}
	saved := map[string][]byte{}
	for _, k := range kernelTunables {
		data, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", k, err)
		}
		saved[k] = data
	}
	savedSysctls = saved
	return nil
}

// restoreHost puts back the sysctls and removes the cgroup roots the
// kubelets used.
func restoreHost() {
	savedMu.Lock()
	defer savedMu.Unlock()
	for k, v := range savedSysctls {
		if err := os.WriteFile("/proc/sys/"+k, v, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: restore sysctl %s: %v\n", k, err)
		}
	}
	for _, root := range cgroupRoots {
		if err := removeCgroupTree(root); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		}
	}
	cgroupRoots = nil
}

// hierarchies are the mounted cgroup hierarchies a cgroup root must exist
// in: the kubelet checks its cgroup root in every v1 subsystem.
func hierarchies() []string {
	if cgroup.V2() {
		return []string{cgroup.Root}
	}
	ents, _ := os.ReadDir(cgroup.Root)
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "unified" {
			out = append(out, filepath.Join(cgroup.Root, e.Name()))
		}
	}
	return out
}

// removeCgroupTree removes a cgroup and its descendants in every hierarchy,
// deepest first; a cgroup that still has processes is an error.
func removeCgroupTree(rel string) error {
	var errs []string
	for _, h := range hierarchies() {
		top := filepath.Join(h, rel)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				errs = append(errs, fmt.Sprintf("%s (processes %q): %v", d, strings.Fields(string(procs)), err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cgroups left behind: %s", strings.Join(errs, "; "))
	}
	return nil
}

// StartKubelet starts a kubelet on crishim (or the runtime at
// opts.Endpoint) and waits until it is healthy. It is stopped, and its pods
// removed, when the test ends.
func StartKubelet(t testing.TB, opts KubeletOptions) *Kubelet {
	t.Helper()
	var err error
	socket := opts.Endpoint
	if socket == "" {
		crishim, err := env.Crishim()
		if err != nil {
			t.Fatalf("crishim: %v", err)
		}
		socket = crishim.Socket
	}
	if err := saveSysctls(); err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{
		Dir:        filepath.Join(env.Dir, "kubelet-"+opts.Name),
		CgroupRoot: "/crishim-e2e-" + opts.Name + "-" + filepath.Base(env.Dir)[len("crishim-it-"):],
		LogPath:    filepath.Join(env.LogDir, "kubelet-"+opts.Name+".log"),
		Endpoint:   socket,
	}
	k.ManifestDir = filepath.Join(k.Dir, "manifests")
	k.PodLogDir = filepath.Join(k.Dir, "pod-logs")
	for _, d := range []string{k.ManifestDir, k.PodLogDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hierarchies() {
		if err := os.MkdirAll(filepath.Join(h, k.CgroupRoot), 0o755); err != nil {
			t.Fatalf("create the kubelet's cgroup root: %v", err)
		}
	}
	savedMu.Lock()
	cgroupRoots = append(cgroupRoots, k.CgroupRoot)
	savedMu.Unlock()

	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	k.Port, k.ReadOnly = ports[0], ports[1]
	k.Address = "127.0.0.1"
	if opts.Kubeconfig != "" {
		// The test network's gateway: an address of this host's own, on the
		// pods' bridge. The bridge plugin makes the bridge at the first pod;
		// the kubelet binds before that, so the bridge is made here, as the
		// plugin would (it adopts an existing one).
		k.Address = env.Network.Gateway.String()
		if err := ensureBridge(); err != nil {
			t.Fatal(err)
		}
	}
	gates := map[string]bool{}
	for g, on := range opts.FeatureGates {
		gates[g] = on
	}
	if opts.EventedPLEG {
		gates["EventedPLEG"] = true
	}
	endpoint := "unix://" + socket
	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"address":                  k.Address,
		"port":                     k.Port,
		"readOnlyPort":             k.ReadOnly,
		"healthzBindAddress":       "127.0.0.1",
		"healthzPort":              ports[2],
		"staticPodPath":            k.ManifestDir,
		"fileCheckFrequency":       "1s",
		"syncFrequency":            "5s",
		"containerRuntimeEndpoint": endpoint,
		"imageServiceEndpoint":     endpoint,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               k.CgroupRoot,
		"cgroupsPerQOS":            true,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		// No CAP_SYS_RESOURCE here: the kubelet could not lower its own score.
		"oomScoreAdj":            0,
		"makeIPTablesUtilChains": false,
		"podLogsDir":             k.PodLogDir,
		"evictionHard": map[string]string{
			"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%",
		},
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": true},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization":               map[string]any{"mode": "AlwaysAllow"},
		"featureGates":                gates,
		"containerLogMaxSize":         "20Ki",
		"containerLogMaxFiles":        3,
		"containerLogMonitorInterval": "3s",
		"runtimeRequestTimeout":       "2m",
		"serializeImagePulls":         false,
		"resolvConf":                  "",
		"shutdownGracePeriod":         "0s",
	}
	for key, v := range opts.ExtraConfig {
		cfg[key] = v
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(k.Dir, "config.json")
	if err := os.WriteFile(confPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	k.NodeName = strings.ToLower(host)
	args := []string{filepath.Join(k8sBin, "kubelet"),
		"--config", confPath,
		"--root-dir", filepath.Join(k.Dir, "root"),
		"--cert-dir", filepath.Join(k.Dir, "pki"),
		"--hostname-override", k.NodeName,
		"--v", "2",
	}
	if opts.Kubeconfig != "" {
		args = append(args, "--kubeconfig", opts.Kubeconfig, "--node-ip", k.Address)
	}
	args = append(args, opts.ExtraFlags...)
	d, err := testenv.StartDaemon("kubelet", k.LogPath, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	k.d = d
	t.Cleanup(func() { k.Stop(t) })

	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[2])
	err = testenv.Poll(2*time.Minute, 200*time.Millisecond, "kubelet healthz", func() (bool, error) {
		if err := d.Exited(); err != nil {
			return false, err
		}
		resp, err := http.Get(healthz)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("healthz: %s", resp.Status)
	})
	if err != nil {
		t.Fatalf("kubelet did not become healthy: %v\nlog tail:\n%s", err, testenv.Tail(k.LogPath, 40))
	}
	return k
}

// Stop removes every static pod, waits until the kubelet has stopped their
// containers and sandboxes, then stops the kubelet and removes what it
// leaves to its garbage collection (stopped sandboxes, exited containers)
// through the CRI, as a node drain would. Only the first call does this:
// a benchmark stops its kubelets between rounds, before the test's cleanup.
func (k *Kubelet) Stop(t testing.TB) {
	k.stopOnce.Do(func() { k.stop(t) })
}

func (k *Kubelet) stop(t testing.TB) {
	ents, _ := os.ReadDir(k.ManifestDir)
	for _, e := range ents {
		_ = os.Remove(filepath.Join(k.ManifestDir, e.Name()))
	}
	if len(ents) > 0 && k.d.Exited() == nil {
		err := testenv.Poll(2*time.Minute, 500*time.Millisecond, "static pods gone", func() (bool, error) {
			pods, err := k.Pods()
			return err == nil && len(pods) == 0, err
		})
		if err != nil {
			t.Errorf("kubelet: %v", err)
		}
		// The kubelet drops a static pod from /pods at once and stops it
		// afterwards; with many pods on a busy machine that takes minutes,
		// which the kubelet is to spend, not the bounded cleanup below.
		if err := waitRuntimeStopped(k.Endpoint, 5*time.Minute); err != nil {
			t.Errorf("kubelet: %v", err)
		}
	}
	if err := k.d.Exited(); err != nil {
		t.Errorf("kubelet died during the test: %v", err)
	}
	if err := k.d.Stop(30 * time.Second); err != nil {
		t.Errorf("stop kubelet: %v", err)
	}
	if err := removeAllPodsAt(k.Endpoint); err != nil {
		t.Errorf("remove pods the kubelet left: %v", err)
	}
	// The kubelet makes its root directory a shared mount of its own.
	if err := unmountUnder(k.Dir); err != nil {
		t.Errorf("unmount the kubelet's mounts: %v", err)
	}
	if err := removeCgroupTree(k.CgroupRoot); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("kubelet log tail:\n%s", testenv.Tail(k.LogPath, 60))
	}
}

// ensureBridge creates the test network's bridge with its gateway address
// unless it exists.
func ensureBridge() error {
	n := env.Network
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		return nil
	}
	ones, _ := n.Subnet.Mask.Size()
	for _, args := range [][]string{
		{"link", "add", n.Bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/%d", n.Gateway, ones), "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) error {
	mounts, err := testenv.MountsUnder(dir)
	if err != nil {
		return err
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return nil
}

// get fetches a kubelet read-only API path.
func (k *Kubelet) get(path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", k.Address, k.ReadOnly, path), nil)
	if err != nil {
		return nil, err
	}
	return fetch(http.DefaultClient, req)
}

// fetch does a GET and returns the body of a 200 answer; any other status
// is an error quoting the body.
func fetch(c *http.Client, req *http.Request) ([]byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

// Pods is the kubelet's own view of its pods (GET /pods): for static pods
// of a standalone kubelet it includes their status.
func (k *Kubelet) Pods() ([]Pod, error) {
	data, err := k.get("/pods")
	if err != nil {
		return nil, err
	}
	var list PodList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("decode /pods: %w", err)
	}
	return list.Items, nil
}

// secureGet fetches a path of the kubelet's main server (container logs,
// exec), which serves TLS with a self-signed certificate.
func (k *Kubelet) secureGet(ctx context.Context, path string) ([]byte, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s:%d%s", k.Address, k.Port, path), nil)
	if err != nil {
		return nil, err
	}
	return fetch(c, req)
}

// AddPod writes a static pod manifest (a Pod object as JSON).
func (k *Kubelet) AddPod(t testing.TB, pod map[string]any) {
	t.Helper()
	data, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	name := pod["metadata"].(map[string]any)["name"].(string)
	// Written aside and renamed: the kubelet must never read half a file.
	tmp := filepath.Join(k.Dir, name+".json.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.ManifestDir, name+".json")); err != nil {
		t.Fatal(err)
	}
}

// DeletePod removes a static pod's manifest.
func (k *Kubelet) DeletePod(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(k.ManifestDir, name+".json")); err != nil {
		t.Fatal(err)
	}
}

// WaitPod polls the kubelet's view of the static pod name until cond holds.
// A static pod's name in the kubelet is name-<node>.
func (k *Kubelet) WaitPod(t testing.TB, name string, timeout time.Duration, what string, cond func(*Pod) bool) *Pod {
	t.Helper()
	var last *Pod
	err := testenv.Poll(timeout, 250*time.Millisecond, what, func() (bool, error) {
		if err := k.d.Exited(); err != nil {
			return false, err
		}
		pods, err := k.Pods()
		if err != nil {
			return false, err
		}
		for i := range pods {
			if pods[i].Metadata.Name == name+"-"+k.NodeName {
				last = &pods[i]
				return cond(last), nil
			}
		}
		return false, fmt.Errorf("pod %s not listed", name)
	})
	if err != nil {
		t.Fatalf("pod %s: %v\nlast status: %s", name, err, last.StatusJSON())
	}
	return last
}

// WaitPodGone polls until the kubelet no longer lists the static pod.
func (k *Kubelet) WaitPodGone(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	err := testenv.Poll(timeout, 250*time.Millisecond, "pod "+name+" gone", func() (bool, error) {
		pods, err := k.Pods()
		if err != nil {
			return false, err
		}
		for _, p := range pods {
			if p.Metadata.Name == name+"-"+k.NodeName {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
