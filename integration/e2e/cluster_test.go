//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// TestCluster: a one-node cluster on crishim. A Deployment of a small web
// server behind a Service is scaled and rolled three ways while a client
// polls its ready endpoints every 100 ms: not one request may fail. Jobs
// reach their end states, kubectl's exec, logs and port-forward work
// through the kubelet, and deleting everything leaves nothing behind.
func TestCluster(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	cp := StartControlPlane(t)
	k := StartKubelet(t, KubeletOptions{Name: "cluster", Kubeconfig: cp.Kubeconfig("kubelet")})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := cp.Kubectl(context.Background(), "get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("cluster events:\n%s", out)
		}
	})
	waitNodeReady(t, cp, k.NodeName)

	webV1, webV2 := pushWebImages(t)
	watch := watchPods(t, cp)

	cp.Apply(t, webService(), webDeployment(webV1))
	cp.MustKubectl(t, "rollout", "status", "deployment/web", "--timeout=3m")
	for _, n := range []string{"2", "3"} {
		cp.MustKubectl(t, "scale", "deployment/web", "--replicas="+n)
		cp.MustKubectl(t, "rollout", "status", "deployment/web", "--timeout=3m")
	}

	client := startPoller(t, cp)
	client.waitFor(t, "v1", 5)
	setImage := client.mark()
	cp.MustKubectl(t, "set", "image", "deployment/web", "web="+webV2)
	cp.MustKubectl(t, "rollout", "status", "deployment/web", "--timeout=5m")
	// Ended pods leave the ready endpoints within moments of the rollout's
	// end; from then on only v2 may answer, through the restart too.
	client.waitFor(t, "v2", 10)
	onlyV2 := client.mark()
	cp.MustKubectl(t, "rollout", "restart", "deployment/web")
	cp.MustKubectl(t, "rollout", "status", "deployment/web", "--timeout=5m")
	undo := client.mark()
	// Revision 3 is the restart of revision 2 (v2): undo to the first.
	cp.MustKubectl(t, "rollout", "undo", "deployment/web", "--to-revision=1")
	cp.MustKubectl(t, "rollout", "status", "deployment/web", "--timeout=5m")
	client.waitFor(t, "v1", 10)
	results := client.stop()

	var failures []string
	for _, r := range results {
		if r.err != "" {
			failures = append(failures, r.at.Format("15:04:05.000")+" "+r.err)
		}
	}
	t.Logf("%d requests during the rollouts, %d failed", len(results), len(failures))
	if len(failures) > 0 {
		t.Errorf("failed requests during the rollouts:\n%s", strings.Join(failures, "\n"))
	}
	for _, seg := range []struct {
		what     string
		from, to int
		want     string
	}{
		{"before set image", 0, setImage, "v1"},
		{"after the v2 rollout and through the restart", onlyV2, undo, "v2"},
	} {
		for _, r := range results[seg.from:seg.to] {
			if r.err == "" && r.version != seg.want {
				t.Errorf("%s: %s answered at %s, want only %s", seg.what, r.version, r.at.Format("15:04:05.000"), seg.want)
				break
			}
		}
	}

	t.Run("KubectlThroughKubelet", func(t *testing.T) { testKubectlStreaming(t, cp, webV1) })
	t.Run("Jobs", func(t *testing.T) { testJobs(t, cp) })

	cp.MustKubectl(t, "delete", "deployment/web", "service/web", "job/ok", "job/fail", "--wait=true", "--timeout=3m")
	if err := testenv.Poll(3*time.Minute, 500*time.Millisecond, "every pod deleted", func() (bool, error) {
		var list PodList
		data, err := cp.Get(context.Background(), "/api/v1/namespaces/default/pods")
		if err == nil {
			err = json.Unmarshal(data, &list)
		}
		return err == nil && len(list.Items) == 0, err
	}); err != nil {
		t.Fatal(err)
	}
	// Every web pod that went away saw its server exit 0 on SIGTERM, after
	// its preStop; the kubelet reports that last status before it deletes
	// the pod.
	// 3 replaced by each of set image, restart and undo, 3 deleted at the end.
	// The list can come back empty before the watch has delivered the
	// last DELETED events.
	var gone []Pod
	if err := testenv.Poll(time.Minute, 100*time.Millisecond, "the pod watch saw every web pod deleted", func() (bool, error) {
		gone = watch.deletedPods("web")
		return len(gone) == watch.seen("web"), nil
	}); err != nil {
		t.Error(err)
	}
	if len(gone) < 12 {
		t.Errorf("the pod watch saw %d web pods deleted, want 12", len(gone))
	}
	for _, p := range gone {
		c := p.Container("web")
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			t.Errorf("web pod %s ended with %s, want its container terminated with exit 0", p.Metadata.Name, p.StatusJSON())
		}
	}
	checkWarnings(t, cp)
	// The kubelet's garbage collection removes the dead sandboxes and
	// containers of deleted pods through crishim.
	rt, err := cri()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.Poll(4*time.Minute, time.Second, "the kubelet removed every sandbox", func() (bool, error) {
		resp, err := rt.ListPodSandbox(context.Background(), &runtime.ListPodSandboxRequest{})
		return err == nil && len(resp.Items) == 0, err
	}); err != nil {
		t.Error(err)
	}
}

func waitNodeReady(t *testing.T, cp *ControlPlane, node string) {
	t.Helper()
	err := testenv.Poll(2*time.Minute, 500*time.Millisecond, "node "+node+" Ready", func() (bool, error) {
		data, err := cp.Get(context.Background(), "/api/v1/nodes/"+node)
		if err != nil {
			return false, err
		}
		var n struct {
			Status struct{ Conditions []PodCondition } `json:"status"`
		}
		if err := json.Unmarshal(data, &n); err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" {
				return c.Status == "True", fmt.Errorf("Ready is %s", c.Status)
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// webScript serves version on :8080 and exits 0 on SIGTERM.
func webScript(version string) string {
	return fmt.Sprintf(`echo %[1]s > /www/index.html; echo "serving %[1]s"; httpd -f -p 8080 -h /www & pid=$!; trap 'kill $pid; wait $pid; echo "stopped %[1]s"; exit 0' TERM; wait $pid`, version)
}

// pushWebImages pushes two versions of the web server; the version is in
// each image's command, so the pod spec changes only its image.
func pushWebImages(t *testing.T) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var refs []string
	for _, v := range []string{"v1", "v2"} {
		img, err := testenv.BusyboxImage(testenv.ImageOptions{Cmd: []string{"sh", "-c", webScript(v)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Registry.Push(ctx, "e2e/web", v, img); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, testenv.RegistryAlias+"/e2e/web:"+v)
	}
	return refs[0], refs[1]
}

func webService() map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "web", "namespace": "default"},
		"spec": map[string]any{
			"selector": map[string]any{"app": "web"},
			"ports":    []any{map[string]any{"port": 80, "targetPort": 8080}},
		},
	}
}

func webDeployment(image string) map[string]any {
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "default"},
		"spec": map[string]any{
			"replicas": 1,
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"strategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": 0, "maxSurge": 1}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec": map[string]any{
					"terminationGracePeriodSeconds": 30,
					"containers": []any{map[string]any{
						"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
						"ports":          []any{map[string]any{"containerPort": 8080}},
						"readinessProbe": map[string]any{"httpGet": map[string]any{"path": "/index.html", "port": 8080}, "periodSeconds": 1},
						// Serving on while the endpoint's removal reaches the clients.
						"lifecycle": map[string]any{"preStop": map[string]any{"exec": map[string]any{"command": []string{"sleep", "3"}}}},
					}},
				},
			},
		},
	}
}

type result struct {
	at      time.Time
	version string
	err     string
}

// poller asks a ready endpoint of the web Service's EndpointSlices every
// 100 ms, as kube-proxy would route a request (there is no kube-proxy:
// the test is the load balancer).
type poller struct {
	mu      sync.Mutex
	results []result
	cancel  context.CancelFunc
	done    chan struct{}
}

func startPoller(t *testing.T, cp *ControlPlane) *poller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &poller{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { p.stop() })
	hc := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r := result{at: time.Now()}
			ips, err := readyEndpoints(ctx, cp)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				r.err = "endpoint slices: " + err.Error()
			case len(ips) == 0:
				r.err = "no ready endpoint"
			default:
				ip := ips[n%len(ips)]
				n++
				r.version, err = get(ctx, hc, fmt.Sprintf("http://%s:8080/index.html", ip))
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.err = ip + ": " + err.Error()
				}
			}
			p.mu.Lock()
			p.results = append(p.results, r)
			p.mu.Unlock()
		}
	}()
	return p
}

// waitFor waits until the last n answers were all version.
func (p *poller) waitFor(t *testing.T, version string, n int) {
	t.Helper()
	err := testenv.Poll(3*time.Minute, 100*time.Millisecond, "every endpoint serving "+version, func() (bool, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.results) < n {
			return false, nil
		}
		for _, r := range p.results[len(p.results)-n:] {
			if r.version != version {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		p.mu.Lock()
		last := p.results[max(0, len(p.results)-5):]
		p.mu.Unlock()
		t.Fatalf("%v; last answers: %+v", err, last)
	}
}

// mark is the index the next answer will have.
func (p *poller) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.results)
}

func (p *poller) stop() []result {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]result(nil), p.results...)
}

func readyEndpoints(ctx context.Context, cp *ControlPlane) ([]string, error) {
	data, err := cp.Get(ctx, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Endpoints []struct {
				Addresses  []string `json:"addresses"`
				Conditions struct {
					Ready *bool `json:"ready"`
				} `json:"conditions"`
			} `json:"endpoints"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				ips = append(ips, e.Addresses[0])
			}
		}
	}
	return ips, nil
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", resp.Status)
	}
	return strings.TrimSpace(string(data)), nil
}

// podWatch keeps the last state of every pod of the default namespace seen
// by a watch, and which were deleted.
type podWatch struct {
	mu      sync.Mutex
	last    map[string]Pod
	deleted map[string]bool
}

func watchPods(t *testing.T, cp *ControlPlane) *podWatch {
	w := &podWatch{last: map[string]Pod{}, deleted: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		rv := ""
		for ctx.Err() == nil {
			rv = w.watch(ctx, cp, rv)
		}
	}()
	return w
}

// watch follows one watch request and returns the last resource version
// seen, to resume from.
func (w *podWatch) watch(ctx context.Context, cp *ControlPlane, rv string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.APIServer+"/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=false&resourceVersion="+rv, nil)
	if err != nil {
		return rv
	}
	req.Header.Set("Authorization", "Bearer "+cp.Token)
	hc := &http.Client{Transport: cp.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		time.Sleep(100 * time.Millisecond) // the API server is restarting or the test ends
		return rv
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			return rv
		}
		var p Pod
		var meta struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if json.Unmarshal(ev.Object, &p) != nil || json.Unmarshal(ev.Object, &meta) != nil {
			continue
		}
		rv = meta.Metadata.ResourceVersion
		w.mu.Lock()
		switch ev.Type {
		case "ADDED", "MODIFIED":
			w.last[p.Metadata.UID] = p
		case "DELETED":
			w.last[p.Metadata.UID] = p
			w.deleted[p.Metadata.UID] = true
		}
		w.mu.Unlock()
	}
}

// seen counts the pods labelled app=label the watch has seen.
func (w *podWatch) seen(app string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.last {
		if p.Metadata.Labels["app"] == app {
			n++
		}
	}
	return n
}

// deletedPods are the deleted pods labelled app=label, as last seen.
func (w *podWatch) deletedPods(app string) []Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Pod
	for uid := range w.deleted {
		if p := w.last[uid]; p.Metadata.Labels["app"] == app {
			out = append(out, p)
		}
	}
	return out
}

func testKubectlStreaming(t *testing.T, cp *ControlPlane, image string) {
	// Replaced pods may still be in their preStop: take one of the
	// current ones.
	var pod string
	if err := testenv.Poll(2*time.Minute, 250*time.Millisecond, "only the 3 current web pods left", func() (bool, error) {
		var list PodList
		data, err := cp.Get(context.Background(), "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
		if err == nil {
			err = json.Unmarshal(data, &list)
		}
		if err != nil || len(list.Items) != 3 {
			return false, err
		}
		for _, p := range list.Items {
			if p.Metadata.DeletionTimestamp != nil || !p.Condition("Ready") {
				return false, nil
			}
		}
		pod = list.Items[0].Metadata.Name
		// The kubelet creates containers by image ID; the status names the
		// image as the pod spec does, and its ID as a repo digest.
		for _, p := range list.Items {
			if c := p.Container("web"); c.Image != image || !strings.Contains(c.ImageID, "@sha256:") {
				t.Errorf("pod %s: status image %q, imageID %q; want %q and a repo digest", p.Metadata.Name, c.Image, c.ImageID, image)
			}
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if out := strings.TrimSpace(cp.MustKubectl(t, "exec", pod, "--", "cat", "/www/index.html")); out != "v1" {
		t.Errorf("kubectl exec: %q, want v1", out)
	}
	if _, err := cp.Kubectl(context.Background(), "exec", pod, "--", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("kubectl exec of a failing command: %v, want exit status 3", err)
	}
	if out := cp.MustKubectl(t, "logs", pod); !strings.Contains(out, "serving v1") {
		t.Errorf("kubectl logs: %q, want the server's start line", out)
	}
	pods := pod
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(k8sBin, "kubectl"), "--kubeconfig", cp.Kubeconfig("admin"), "port-forward", "pod/"+pods, ":8080")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("kubectl port-forward: %v", err)
	}
	m := regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("kubectl port-forward said %q", line)
	}
	body, err := get(ctx, &http.Client{Timeout: 10 * time.Second}, "http://127.0.0.1:"+m[1]+"/index.html")
	if err != nil || body != "v1" {
		t.Errorf("through kubectl port-forward: %q, %v; want v1", body, err)
	}
}

func testJobs(t *testing.T, cp *ControlPlane) {
	job := func(name, script string) map[string]any {
		return map[string]any{
			"apiVersion": "batch/v1", "kind": "Job",
			"metadata": map[string]any{"name": name, "namespace": "default"},
			"spec": map[string]any{
				"backoffLimit": 0,
				"template": map[string]any{"spec": map[string]any{
					"restartPolicy": "Never",
					"containers": []any{map[string]any{
						"name": "job", "image": env.BusyboxImage, "imagePullPolicy": "IfNotPresent",
						"command": []string{"sh", "-c", script},
					}},
				}},
			},
		}
	}
	cp.Apply(t, job("ok", "echo done"), job("fail", "exit 2"))
	cp.MustKubectl(t, "wait", "--for=condition=Complete", "job/ok", "--timeout=3m")
	cp.MustKubectl(t, "wait", "--for=condition=Failed", "job/fail", "--timeout=3m")
	if out := cp.MustKubectl(t, "get", "pods", "-l", "job-name=ok", "-o", "jsonpath={.items[0].status.phase}"); out != "Succeeded" {
		t.Errorf("pod of the succeeding job: phase %q", out)
	}
	out := cp.MustKubectl(t, "get", "pods", "-l", "job-name=fail", "-o", "jsonpath={.items[0].status.phase} {.items[0].status.containerStatuses[0].state.terminated.exitCode} {.items[0].status.containerStatuses[0].state.terminated.reason}")
	if out != "Failed 2 Error" {
		t.Errorf("pod of the failing job: %q, want Failed 2 Error", out)
	}
}

// checkWarnings fails on the Warning events that mean the runtime let the
// kubelet down.
func checkWarnings(t *testing.T, cp *ControlPlane) {
	t.Helper()
	data, err := cp.Get(context.Background(), "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Type, Reason, Message string
			InvolvedObject        struct{ Kind, Name string } `json:"involvedObject"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{"FailedKillPod": true, "FailedCreatePodSandBox": true, "FailedSync": true, "BackOff": true,
		"FailedPreStopHook": true, "FailedPostStartHook": true, "Failed": true}
	for _, e := range list.Items {
		if e.Type == "Warning" && bad[e.Reason] {
			t.Errorf("Warning event %s on %s %s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}
}
