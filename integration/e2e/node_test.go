//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// The node suite: the Kubernetes pod lifecycle as a standalone kubelet
// enforces it over the CRI, observed from the kubelet's own API (/pods:
// phases, conditions, restart counts, last states), from inside the
// containers (files they write to an emptyDir or a hostPath) and from
// crishim. Every scenario is a static pod; they run side by side on one
// kubelet, once with the generic PLEG (relisting) and once with the
// EventedPLEG feature gate, where the kubelet learns of container
// transitions from crishim's GetContainerEvents stream.

func TestNodeGenericPLEG(t *testing.T) { runNodeSuite(t, "generic", false) }

func TestNodeEventedPLEG(t *testing.T) { runNodeSuite(t, "evented", true) }

// idle runs until SIGTERM, then exits 0.
const idle = `trap "exit 0" TERM; while true; do sleep 0.2; done`

type nodeScenario struct {
	name string
	run  func(t *testing.T, k *Kubelet)
}

var nodeScenarios = []nodeScenario{
	{"InitContainersInOrder", testInitContainersInOrder},
	{"FailingInitContainer", testFailingInitContainer},
	{"Hooks", testHooks},
	{"FailingPostStart", testFailingPostStart},
	{"LivenessProbes", testLivenessProbes},
	{"ReadinessProbe", testReadinessProbe},
	{"StartupProbe", testStartupProbe},
	{"RestartPolicies", testRestartPolicies},
	{"GracefulTermination", testGracefulTermination},
	{"LogsAndRotation", testLogsAndRotation},
	{"HostNetworkAndHostPort", testHostNetworkAndHostPort},
}

func runNodeSuite(t *testing.T, name string, evented bool) {
	t.Cleanup(func() { checkNoLeaks(t) }) // runs after the kubelet's own cleanup
	k := StartKubelet(t, KubeletOptions{Name: name, EventedPLEG: evented})
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range nodeScenarios {
			sc := sc
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.run(t, k)
			})
		}
	})
}

// checkNoLeaks: once every pod is gone, nothing of them may remain, shims
// included (a pod's shim exits once its last task is deleted).
func checkNoLeaks(t testing.TB) {
	t.Helper()
	var shims []int
	if err := testenv.Poll(30*time.Second, 200*time.Millisecond, "shims exited", func() (bool, error) {
		shims = testenv.ProcessesWithArgs("containerd-shim-runc-v2", "-address", env.Containerd.Address)
		return len(shims) == 0, nil
	}); err != nil {
		for _, pid := range shims {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("shim %d still running with no pod left: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	leaks, err := env.Leaks()
	if err != nil {
		t.Errorf("leak check: %v", err)
		return
	}
	if len(leaks) > 0 {
		t.Errorf("left behind after every pod was removed:\n%s", strings.Join(leaks, "\n"))
	}
}

// pod is a static pod manifest of name with spec.
func pod(name string, spec map[string]any) map[string]any {
	if _, ok := spec["terminationGracePeriodSeconds"]; !ok {
		spec["terminationGracePeriodSeconds"] = 5
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     spec,
	}
}

// ctr is a busybox container running script.
func ctr(name, script string, extra ...map[string]any) map[string]any {
	c := map[string]any{
		"name": name, "image": env.BusyboxImage, "imagePullPolicy": "IfNotPresent",
		"command": []string{"sh", "-c", script},
	}
	for _, e := range extra {
		for k, v := range e {
			c[k] = v
		}
	}
	return c
}

// hostDir is a directory of the test's own that a pod mounts at /events
// (hostPath): what the containers write there outlives the pod.
func hostDir(t *testing.T, k *Kubelet, name string) (string, map[string]any, map[string]any) {
	t.Helper()
	dir := filepath.Join(k.Dir, "events", name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	volume := map[string]any{"name": "events", "hostPath": map[string]any{"path": dir, "type": "Directory"}}
	mount := map[string]any{"name": "events", "mountPath": "/events"}
	return dir, volume, mount
}

// events reads the lines the pod's containers appended to /events/log.
func events(dir string) []string {
	data, _ := os.ReadFile(filepath.Join(dir, "log"))
	return strings.Fields(string(data))
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func probe(handler map[string]any, period, failures int) map[string]any {
	p := map[string]any{"periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 1}
	for k, v := range handler {
		p[k] = v
	}
	return p
}

func execAction(cmd ...string) map[string]any {
	return map[string]any{"exec": map[string]any{"command": cmd}}
}

func testInitContainersInOrder(t *testing.T, k *Kubelet) {
	work := map[string]any{"name": "work", "mountPath": "/work"}
	k.AddPod(t, pod("init-order", map[string]any{
		"volumes": []any{map[string]any{"name": "work", "emptyDir": map[string]any{}}},
		"initContainers": []any{
			ctr("first", `echo first >> /work/order; sleep 1; echo first-done >> /work/order`, map[string]any{"volumeMounts": []any{work}}),
			ctr("second", `echo second >> /work/order`, map[string]any{"volumeMounts": []any{work}}),
		},
		"containers": []any{ctr("app", `echo app >> /work/order; cat /work/order; `+idle, map[string]any{"volumeMounts": []any{work}})},
	}))
	p := k.WaitPod(t, "init-order", 2*time.Minute, "app running", func(p *Pod) bool { return p.Container("app").Running() })
	if p.Status.Phase != "Running" {
		t.Errorf("phase %s, want Running", p.Status.Phase)
	}
	var prev *Terminated
	for _, name := range []string{"first", "second"} {
		c := p.Container(name)
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.State.Terminated.Reason != "Completed" {
			t.Fatalf("init container %s: %+v, want terminated with 0 Completed", name, c)
		}
		if prev != nil && c.State.Terminated.StartedAt.Before(prev.FinishedAt) {
			t.Errorf("init container %s started at %v, before the previous one finished at %v", name, c.State.Terminated.StartedAt, prev.FinishedAt)
		}
		prev = c.State.Terminated
	}
	// The emptyDir shows it to the second: each ran to completion before the next.
	logs := k.waitLogs(t, "init-order", "app", func(s string) bool { return strings.Contains(s, "app") })
	if got := strings.Fields(logs); strings.Join(got, " ") != "first first-done second app" {
		t.Errorf("order in the emptyDir: %q, want first, first-done, second, app", got)
	}
}

func testFailingInitContainer(t *testing.T, k *Kubelet) {
	dir, vol, mount := hostDir(t, k, "init-fail")
	k.AddPod(t, pod("init-fail-never", map[string]any{
		"restartPolicy":  "Never",
		"volumes":        []any{vol},
		"initContainers": []any{ctr("init", `exit 3`)},
		"containers":     []any{ctr("app", `echo app-ran >> /events/log`, map[string]any{"volumeMounts": []any{mount}})},
	}))
	k.AddPod(t, pod("init-fail-always", map[string]any{
		"volumes":        []any{vol},
		"initContainers": []any{ctr("init", `exit 1`)},
		"containers":     []any{ctr("app", `echo app-ran >> /events/log`, map[string]any{"volumeMounts": []any{mount}})},
	}))
	p := k.WaitPod(t, "init-fail-never", 2*time.Minute, "phase Failed", func(p *Pod) bool { return p.Status.Phase == "Failed" })
	if c := p.Container("init"); c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 3 || c.State.Terminated.Reason != "Error" {
		t.Errorf("init container: %+v, want terminated with 3 Error", c)
	}
	k.WaitPod(t, "init-fail-always", 2*time.Minute, "init retried", func(p *Pod) bool {
		c := p.Container("init")
		return c != nil && c.RestartCount >= 2
	})
	p = k.WaitPod(t, "init-fail-always", time.Minute, "still pending", func(p *Pod) bool { return true })
	if p.Status.Phase != "Pending" || p.Container("app").Running() || p.Condition("Initialized") {
		t.Errorf("pod with a failing init container: %s, want Pending, not initialized, app not running", p.StatusJSON())
	}
	if ev := events(dir); len(ev) > 0 {
		t.Errorf("an app container ran although its init container failed: %v", ev)
	}
}

func testHooks(t *testing.T, k *Kubelet) {
	dir, vol, mount := hostDir(t, k, "hooks")
	// The httpGet hooks reach CGI scripts of a sidecar's httpd: a sidecar
	// (an init container that keeps running) is started, and its startup
	// probe passed, before the app containers start, and stopped after them.
	cgi := func(name string) string {
		return fmt.Sprintf(`printf '#!/bin/sh\necho %[1]s-http >> /events/log\nprintf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n' > /www/cgi-bin/%[1]s && chmod +x /www/cgi-bin/%[1]s; `, name)
	}
	server := `mkdir -p /www/cgi-bin; ` + cgi("poststart") + cgi("prestop") + `trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait`
	k.AddPod(t, pod("hooks", map[string]any{
		"volumes":                       []any{vol},
		"terminationGracePeriodSeconds": 20,
		"initContainers": []any{ctr("server", server, map[string]any{
			"restartPolicy": "Always",
			"volumeMounts":  []any{mount},
			"startupProbe":  probe(map[string]any{"tcpSocket": map[string]any{"port": 8080}}, 1, 30),
		})},
		"containers": []any{
			ctr("exec", `trap "echo sigterm-exec >> /events/log; exit 0" TERM; echo main-exec >> /events/log; while true; do sleep 0.2; done`, map[string]any{
				"volumeMounts": []any{mount},
				"lifecycle": map[string]any{
					"postStart": execAction("sh", "-c", "echo poststart-exec >> /events/log"),
					"preStop":   execAction("sh", "-c", "echo prestop-exec >> /events/log"),
				},
			}),
			ctr("http", `trap "echo sigterm-http >> /events/log; exit 0" TERM; while true; do sleep 0.2; done`, map[string]any{
				"volumeMounts": []any{mount},
				"lifecycle": map[string]any{
					"postStart": map[string]any{"httpGet": map[string]any{"path": "/cgi-bin/poststart", "port": 8080}},
					"preStop":   map[string]any{"httpGet": map[string]any{"path": "/cgi-bin/prestop", "port": 8080}},
				},
			}),
		},
	}))
	p := k.WaitPod(t, "hooks", 2*time.Minute, "both containers running", func(p *Pod) bool {
		return p.Container("exec").Running() && p.Container("http").Running()
	})
	if err := testenv.Poll(30*time.Second, 200*time.Millisecond, "postStart hooks ran", func() (bool, error) {
		ev := events(dir)
		return indexOf(ev, "poststart-exec") >= 0 && indexOf(ev, "poststart-http") >= 0, nil
	}); err != nil {
		t.Fatalf("%v: events %v", err, events(dir))
	}
	if ev := events(dir); indexOf(ev, "prestop-exec") >= 0 || indexOf(ev, "prestop-http") >= 0 {
		t.Fatalf("a preStop hook ran while the pod runs: %v", ev)
	}
	k.DeletePod(t, "hooks")
	waitExited(t, p.Container("exec").ContainerID)
	waitExited(t, p.Container("http").ContainerID)
	ev := events(dir)
	for _, c := range []string{"exec", "http"} {
		pre, term := indexOf(ev, "prestop-"+c), indexOf(ev, "sigterm-"+c)
		if pre < 0 || term < 0 || pre > term {
			t.Errorf("container %s: events %v, want its preStop before its SIGTERM", c, ev)
		}
	}
}

func testFailingPostStart(t *testing.T, k *Kubelet) {
	k.AddPod(t, pod("poststart-fail", map[string]any{
		"containers": []any{ctr("app", idle, map[string]any{
			"lifecycle": map[string]any{"postStart": execAction("sh", "-c", "exit 7")},
		})},
	}))
	p := k.WaitPod(t, "poststart-fail", 2*time.Minute, "container killed and restarted", func(p *Pod) bool {
		c := p.Container("app")
		return c != nil && c.RestartCount >= 1 && c.LastState.Terminated != nil
	})
	if p.Condition("Ready") {
		t.Errorf("a container whose postStart fails made the pod Ready: %s", p.StatusJSON())
	}
}

func testLivenessProbes(t *testing.T, k *Kubelet) {
	for _, tc := range []struct {
		name   string
		probe  map[string]any
		script string
		exit   int
		reason string
	}{
		// PID 1 without a TERM handler ignores SIGTERM: killed at the grace period.
		{"live-exec", execAction("test", "-f", "/tmp/alive"), `while true; do sleep 0.2; done`, 137, "Error"},
		{"live-http", map[string]any{"httpGet": map[string]any{"path": "/missing", "port": 8080}}, `httpd -p 8080 -h /www; ` + idle, 0, "Completed"},
		{"live-tcp", map[string]any{"tcpSocket": map[string]any{"port": 9999}}, idle, 0, "Completed"},
	} {
		k.AddPod(t, pod(tc.name, map[string]any{
			"terminationGracePeriodSeconds": 2,
			"containers":                    []any{ctr("app", tc.script, map[string]any{"livenessProbe": probe(tc.probe, 1, 2)})},
		}))
	}
	for _, tc := range []struct {
		name   string
		exit   int
		reason string
	}{{"live-exec", 137, "Error"}, {"live-http", 0, "Completed"}, {"live-tcp", 0, "Completed"}} {
		p := k.WaitPod(t, tc.name, 2*time.Minute, "restarted by its liveness probe", func(p *Pod) bool {
			c := p.Container("app")
			return c != nil && c.RestartCount >= 1 && c.LastState.Terminated != nil
		})
		last := p.Container("app").LastState.Terminated
		if last.ExitCode != tc.exit || last.Reason != tc.reason {
			t.Errorf("%s: last state %+v, want exit %d %s", tc.name, last, tc.exit, tc.reason)
		}
	}
}

func testReadinessProbe(t *testing.T, k *Kubelet) {
	k.AddPod(t, pod("readiness", map[string]any{
		"containers": []any{ctr("app", `sleep 5; touch /tmp/ready; `+idle, map[string]any{
			"readinessProbe": probe(execAction("test", "-f", "/tmp/ready"), 1, 1),
		})},
	}))
	p := k.WaitPod(t, "readiness", 2*time.Minute, "running, not ready", func(p *Pod) bool { return p.Container("app").Running() })
	if p.Condition("Ready") || p.Container("app").Ready {
		t.Errorf("ready before its readiness probe passed: %s", p.StatusJSON())
	}
	p = k.WaitPod(t, "readiness", time.Minute, "ready", func(p *Pod) bool { return p.Condition("Ready") })
	if c := p.Container("app"); !c.Ready || c.RestartCount != 0 {
		t.Errorf("after its readiness probe passed: %+v, want ready without restarts", c)
	}
}

func testStartupProbe(t *testing.T, k *Kubelet) {
	// The liveness probe fails until /tmp/started exists, faster than the
	// container makes it: only the startup probe holding it back keeps
	// the container from being restarted.
	k.AddPod(t, pod("startup", map[string]any{
		"containers": []any{ctr("app", `sleep 5; touch /tmp/started; `+idle, map[string]any{
			"startupProbe":   probe(execAction("test", "-f", "/tmp/started"), 1, 30),
			"livenessProbe":  probe(execAction("test", "-f", "/tmp/started"), 1, 1),
			"readinessProbe": probe(execAction("true"), 1, 1),
		})},
	}))
	p := k.WaitPod(t, "startup", 2*time.Minute, "running", func(p *Pod) bool { return p.Container("app").Running() })
	if c := p.Container("app"); c.Started != nil && *c.Started || c.Ready {
		t.Errorf("started or ready before the startup probe passed: %+v", c)
	}
	p = k.WaitPod(t, "startup", time.Minute, "started and ready", func(p *Pod) bool {
		c := p.Container("app")
		return c.Started != nil && *c.Started && c.Ready
	})
	if c := p.Container("app"); c.RestartCount != 0 {
		t.Errorf("restarted %d times while its startup probe held liveness back", c.RestartCount)
	}
}

func testRestartPolicies(t *testing.T, k *Kubelet) {
	type want struct {
		phase, reason string
		exit          int
	}
	cases := []struct {
		name, policy, script string
		mem                  string
		want                 want
	}{
		{"never-ok", "Never", `exit 0`, "", want{"Succeeded", "Completed", 0}},
		{"never-fail", "Never", `exit 3`, "", want{"Failed", "Error", 3}},
		{"onfailure-ok", "OnFailure", `exit 0`, "", want{"Succeeded", "Completed", 0}},
		{"oom", "Never", `exec dd if=/dev/zero of=/dev/null bs=64M count=1`, "24Mi", want{"Failed", "OOMKilled", 137}},
	}
	for _, tc := range cases {
		var extra map[string]any
		if tc.mem != "" {
			extra = map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": tc.mem}}}
		}
		k.AddPod(t, pod(tc.name, map[string]any{"restartPolicy": tc.policy, "containers": []any{ctr("app", tc.script, extra)}}))
	}
	k.AddPod(t, pod("onfailure-crash", map[string]any{"restartPolicy": "OnFailure", "containers": []any{ctr("app", `exit 1`)}}))
	k.AddPod(t, pod("always-exit0", map[string]any{"restartPolicy": "Always", "containers": []any{ctr("app", `exit 0`)}}))

	for _, tc := range cases {
		p := k.WaitPod(t, tc.name, 2*time.Minute, "phase "+tc.want.phase, func(p *Pod) bool { return p.Status.Phase == tc.want.phase })
		c := p.Container("app")
		if c.State.Terminated == nil || c.State.Terminated.ExitCode != tc.want.exit || c.State.Terminated.Reason != tc.want.reason || c.RestartCount != 0 {
			t.Errorf("%s: %+v, want terminated %d %s, no restarts", tc.name, c, tc.want.exit, tc.want.reason)
		}
	}
	p := k.WaitPod(t, "onfailure-crash", 2*time.Minute, "CrashLoopBackOff", func(p *Pod) bool {
		c := p.Container("app")
		return c != nil && c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff"
	})
	if c := p.Container("app"); c.RestartCount < 1 || c.LastState.Terminated == nil || c.LastState.Terminated.ExitCode != 1 || c.LastState.Terminated.Reason != "Error" {
		t.Errorf("crash-looping container: %+v, want restarts and last state 1 Error", c)
	}
	p = k.WaitPod(t, "always-exit0", 2*time.Minute, "restarted", func(p *Pod) bool {
		c := p.Container("app")
		return c != nil && c.RestartCount >= 1
	})
	if p.Status.Phase != "Running" {
		t.Errorf("restartPolicy Always: phase %s, want Running", p.Status.Phase)
	}
}

func testGracefulTermination(t *testing.T, k *Kubelet) {
	dir, vol, mount := hostDir(t, k, "graceful")
	const grace = 4
	k.AddPod(t, pod("term-handler", map[string]any{
		"terminationGracePeriodSeconds": 60,
		"containers":                    []any{ctr("app", idle)},
	}))
	k.AddPod(t, pod("term-ignorer", map[string]any{
		"terminationGracePeriodSeconds": grace,
		"volumes":                       []any{vol},
		"containers": []any{ctr("app", `trap "echo sigterm >> /events/log" TERM; while true; do sleep 0.2; done`, map[string]any{
			"volumeMounts": []any{mount},
			"lifecycle":    map[string]any{"preStop": execAction("sh", "-c", "echo prestop >> /events/log")},
		})},
	}))
	ids := map[string]string{}
	for _, name := range []string{"term-handler", "term-ignorer"} {
		p := k.WaitPod(t, name, 2*time.Minute, "running", func(p *Pod) bool { return p.Container("app").Running() })
		ids[name] = p.Container("app").ContainerID
	}
	deleted := map[string]time.Time{}
	for _, name := range []string{"term-handler", "term-ignorer"} {
		deleted[name] = time.Now()
		k.DeletePod(t, name)
	}
	// The kubelet forgets a static pod as soon as its manifest goes and
	// stops it in the background; it leaves the exited containers to its
	// garbage collection, so crishim still has them, with their exit.
	exit := func(name string) *runtime.ContainerStatus { return waitExited(t, ids[name]) }
	if st := exit("term-handler"); st.ExitCode != 0 {
		t.Errorf("a container that handles SIGTERM: exit %d %s, want 0 (it was killed instead)", st.ExitCode, st.Reason)
	}
	st := exit("term-ignorer")
	if st.ExitCode != 137 {
		t.Errorf("a container that ignores SIGTERM: exit %d %s, want 137 (SIGKILL at the grace period)", st.ExitCode, st.Reason)
	}
	if took := time.Unix(0, st.FinishedAt).Sub(deleted["term-ignorer"]); took < (grace-1)*time.Second {
		t.Errorf("SIGKILL %v after the pod's deletion, before its grace period of %ds", took, grace)
	}
	ev := events(dir)
	if pre, term := indexOf(ev, "prestop"), indexOf(ev, "sigterm"); pre < 0 || term < 0 || pre > term {
		t.Errorf("events %v: want preStop, then SIGTERM", ev)
	}
}

func testLogsAndRotation(t *testing.T, k *Kubelet) {
	// About 40 KB/s of numbered lines: past containerLogMaxSize (20Ki)
	// between two of the kubelet's checks.
	k.AddPod(t, pod("logs", map[string]any{
		"containers": []any{ctr("app", `trap "exit 0" TERM; i=0; while true; do seq $i $((i+199)); i=$((i+200)); sleep 0.1; done`)},
	}))
	p := k.WaitPod(t, "logs", 2*time.Minute, "running", func(p *Pod) bool { return p.Container("app").Running() })
	dir := filepath.Join(k.PodLogDir, fmt.Sprintf("%s_%s_%s", p.Metadata.Namespace, p.Metadata.Name, p.Metadata.UID), "app")
	var rotated []string
	if err := testenv.Poll(time.Minute, 250*time.Millisecond, "the kubelet rotated the log", func() (bool, error) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return false, err
		}
		rotated = nil
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "0.log.") {
				rotated = append(rotated, e.Name())
			}
		}
		return len(rotated) > 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	// After ReopenContainerLog the output goes on in a fresh 0.log, past
	// what the rotated files hold.
	first := func() (int, error) {
		data, err := os.ReadFile(filepath.Join(dir, "0.log"))
		if err != nil {
			return 0, err
		}
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		if len(f) < 4 {
			return 0, fmt.Errorf("first line %q", line)
		}
		return strconv.Atoi(f[3])
	}
	if err := testenv.Poll(time.Minute, 250*time.Millisecond, "0.log continues after a rotation", func() (bool, error) {
		n, err := first()
		return err == nil && n > 0, err
	}); err != nil {
		t.Fatal(err)
	}
	// The kubelet's /containerLogs reads the current file through crishim's path.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data, err := k.secureGet(ctx, fmt.Sprintf("/containerLogs/%s/%s/app?tailLines=5", p.Metadata.Namespace, p.Metadata.Name))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(string(data)); len(lines) != 5 {
		t.Errorf("containerLogs tailLines=5: %q", data)
	}
}

func testHostNetworkAndHostPort(t *testing.T, k *Kubelet) {
	hostNetPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	hostPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	k.AddPod(t, pod("hostnet", map[string]any{
		"hostNetwork": true,
		"containers":  []any{ctr("web", fmt.Sprintf(`echo hostnet > /www/index.html; exec httpd -f -p 127.0.0.1:%d -h /www`, hostNetPort))},
	}))
	k.AddPod(t, pod("hostport", map[string]any{
		"containers": []any{ctr("web", `echo hostport > /www/index.html; exec httpd -f -p 8080 -h /www`, map[string]any{
			"ports": []any{map[string]any{"containerPort": 8080, "hostPort": hostPort, "protocol": "TCP"}},
		})},
	}))
	for _, tc := range []struct{ pod, url, body string }{
		{"hostnet", fmt.Sprintf("http://127.0.0.1:%d/index.html", hostNetPort), "hostnet"},
		{"hostport", fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort), "hostport"},
	} {
		p := k.WaitPod(t, tc.pod, 2*time.Minute, "running", func(p *Pod) bool { return p.Container("web").Running() })
		if tc.pod == "hostnet" && p.Status.PodIP != p.Status.HostIP {
			t.Errorf("host-network pod IP %q, host IP %q: want the same", p.Status.PodIP, p.Status.HostIP)
		}
		var body string
		if err := testenv.Poll(30*time.Second, 200*time.Millisecond, "GET "+tc.url, func() (bool, error) {
			resp, err := http.Get(tc.url)
			if err != nil {
				return false, err
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			body = strings.TrimSpace(string(data))
			return err == nil && resp.StatusCode == http.StatusOK, err
		}); err != nil {
			t.Fatal(err)
		}
		if body != tc.body {
			t.Errorf("%s answered %q, want %q", tc.url, body, tc.body)
		}
	}
}

// waitExited waits until crishim reports the container (a kubelet
// container ID) exited, and returns its status.
func waitExited(t *testing.T, kubeletID string) *runtime.ContainerStatus {
	t.Helper()
	var st *runtime.ContainerStatus
	err := testenv.Poll(2*time.Minute, 200*time.Millisecond, "container "+kubeletID+" exited", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		st, err = criContainer(ctx, kubeletID)
		return err == nil && st.State == runtime.ContainerState_CONTAINER_EXITED, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitLogs polls the kubelet's /containerLogs for a container until cond
// holds of them.
func (k *Kubelet) waitLogs(t *testing.T, podName, container string, cond func(string) bool) string {
	t.Helper()
	var logs string
	err := testenv.Poll(time.Minute, 250*time.Millisecond, "logs of "+container, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		data, err := k.secureGet(ctx, fmt.Sprintf("/containerLogs/default/%s-%s/%s", podName, k.NodeName, container))
		logs = string(data)
		return err == nil && cond(logs), err
	})
	if err != nil {
		t.Fatalf("%v (last: %q)", err, logs)
	}
	return logs
}
