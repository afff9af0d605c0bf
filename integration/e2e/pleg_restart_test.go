//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/integration/testenv"
)

// TestNodeEventedPLEGRestart restarts crishim under a kubelet with the
// EventedPLEG gate while its pods run, one is being created and one is
// being deleted. The kubelet's event stream breaks each time; the kubelet
// must carry on: a container that exits after the restart is seen
// terminated and restarted, a new pod runs, a deleted one goes, and
// nothing of them is left afterwards.
//
// The first restart keeps the socket, as crishim.socket does under
// systemd: the kubelet's retries wait in its backlog and it subscribes
// again. The second removes it, as a crishim without socket activation
// does: the kubelet's five retries, made at once, all fail and it falls
// back to relisting every second for good.
func TestNodeEventedPLEGRestart(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	crishim, err := env.Crishim()
	if err != nil {
		t.Fatal(err)
	}
	// Runs after the kubelet's cleanup: later tests get crishim as it was.
	t.Cleanup(func() {
		if err := crishim.Stop(); err != nil {
			t.Errorf("stop crishim: %v", err)
		}
		if err := crishim.ReleaseSocket(); err != nil {
			t.Errorf("release the CRI socket: %v", err)
		}
		if err := crishim.Start(); err != nil {
			t.Errorf("start crishim on its own socket: %v", err)
		}
	})
	if err := crishim.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := crishim.HoldSocket(); err != nil {
		t.Fatal(err)
	}
	if err := crishim.Start(); err != nil {
		t.Fatalf("start crishim on a passed socket: %v", err)
	}
	// The evented PLEG's own lines (stream failures, the fallback to
	// relisting) are at verbosity 4.
	k := StartKubelet(t, KubeletOptions{Name: "pleg-restart", EventedPLEG: true, ExtraFlags: []string{"--vmodule", "evented=4"}})
	dir, vol, mount := hostDir(t, k, "pleg-restart")
	// exits 7 once the host creates /events/go, taking the file with it so
	// that its restart runs on.
	waiter := `trap "exit 0" TERM; while [ ! -e /events/go ]; do sleep 0.2; done; rm /events/go; exit 7`
	k.AddPod(t, pod("steady", map[string]any{
		"volumes": []any{vol},
		"containers": []any{
			ctr("waiter", waiter, map[string]any{"volumeMounts": []any{mount}}),
			ctr("idle", idle),
		},
	}))
	k.AddPod(t, pod("doomed", map[string]any{"containers": []any{ctr("idle", idle)}}))
	k.WaitPod(t, "steady", 2*time.Minute, "both containers running", func(p *Pod) bool {
		return p.Container("waiter").Running() && p.Container("idle").Running()
	})
	k.WaitPod(t, "doomed", 2*time.Minute, "running", func(p *Pod) bool { return p.Container("idle").Running() })
	subscriptions := k.metric(t, "kubelet_evented_pleg_connection_success_count")
	if subscriptions != 1 {
		t.Fatalf("the kubelet made %v event subscriptions, want 1 before the restarts", subscriptions)
	}

	for round, keepSocket := range []bool{true, false} {
		how := map[bool]string{true: "restart on a kept socket", false: "restart without a socket"}[keepSocket]
		created, deleted := "newborn", "doomed"
		if round == 1 {
			created, deleted = "late", "newborn"
		}
		// One pod is being created and one deleted as crishim goes down.
		doomedSandbox := k.sandboxOf(t, deleted)
		k.AddPod(t, pod(created, map[string]any{"containers": []any{ctr("idle", idle)}}))
		k.DeletePod(t, deleted)
		k.WaitPod(t, created, time.Minute, "seen by the kubelet", func(*Pod) bool { return true })
		logFrom := fileSize(t, k.LogPath)
		if err := crishim.Stop(); err != nil {
			t.Fatalf("%s: stop crishim: %v", how, err)
		}
		if !keepSocket {
			if err := crishim.ReleaseSocket(); err != nil {
				t.Fatal(err)
			}
		}
		if err := crishim.Start(); err != nil {
			t.Fatalf("%s: start crishim: %v", how, err)
		}
		// The waiter exits after the restart, seen only through the new
		// stream or a relist.
		if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}

		p := k.WaitPod(t, "steady", 2*time.Minute, how+": waiter restarted after exiting 7", func(p *Pod) bool {
			w := p.Container("waiter")
			return w != nil && w.RestartCount == round+1 && w.State.Running != nil &&
				w.LastState.Terminated != nil && w.LastState.Terminated.ExitCode == 7
		})
		if idle := p.Container("idle"); idle.RestartCount != 0 || !idle.Running() {
			t.Errorf("%s: steady's idle container: %d restarts, running %v; want untouched by the restart", how, idle.RestartCount, idle.Running())
		}
		if p.Status.Phase != "Running" {
			t.Errorf("%s: steady: phase %s, want Running", how, p.Status.Phase)
		}
		k.WaitPod(t, created, 2*time.Minute, how+": running", func(p *Pod) bool {
			return p.Status.Phase == "Running" && p.Container("idle").Running()
		})
		k.WaitPodGone(t, deleted, 2*time.Minute)
		k.waitSandboxStopped(t, doomedSandbox)

		lines := logLinesFrom(t, k.LogPath, logFrom)
		broke := grepLines(lines, "failed to receive streaming container event", "container events stream is closed")
		failed := grepLines(lines, "Failed to get container events, retrying")
		fellBack := grepLines(lines, "Fall back to Generic PLEG relisting")
		now := k.metric(t, "kubelet_evented_pleg_connection_success_count")
		resubscribed := now - subscriptions
		subscriptions = now
		t.Logf("%s: the kubelet logged %d broken streams and %d failed subscriptions, subscribed %d times, fell back to relisting: %v",
			how, len(broke), len(failed), int(resubscribed), len(fellBack) > 0)
		if len(broke) != 1 || !strings.Contains(broke[0], "crishim is shutting down") {
			t.Errorf("%s: the kubelet's log shows %d broken event streams, want the one crishim ended at its shutdown:\n%s", how, len(broke), strings.Join(broke, "\n"))
		}
		if keepSocket && (resubscribed != 1 || len(fellBack) > 0) {
			t.Errorf("%s: the kubelet subscribed %v times again and fell back to relisting: %v; want one new subscription and no fallback:\n%s",
				how, resubscribed, len(fellBack) > 0, strings.Join(failed, "\n"))
		}
		if !keepSocket && (resubscribed != 0 || len(fellBack) != 1) {
			t.Errorf("%s: the kubelet subscribed %v times again and fell back to relisting %d times; want its retries used up and the fallback", how, resubscribed, len(fellBack))
		}
	}
}

// metric reads a counter of the kubelet's /metrics; absent is 0.
func (k *Kubelet) metric(t *testing.T, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := k.secureGet(ctx, "/metrics")
	if err != nil {
		t.Fatalf("kubelet metrics: %v", err)
	}
	return parseMetrics(data)[name]
}

// sandboxOf is the ID of the static pod's ready sandbox in crishim.
func (k *Kubelet) sandboxOf(t *testing.T, name string) string {
	t.Helper()
	rt, err := cri()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		State:         &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.name": name + "-" + k.NodeName},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d ready sandboxes of %s, want 1", len(list.Items), name)
	}
	return list.Items[0].Id
}

// waitSandboxStopped polls crishim until the sandbox is not ready and none
// of its containers runs, or the kubelet has removed it already.
func (k *Kubelet) waitSandboxStopped(t *testing.T, id string) {
	t.Helper()
	rt, err := cri()
	if err != nil {
		t.Fatal(err)
	}
	err = testenv.Poll(time.Minute, 250*time.Millisecond, "sandbox "+id[:12]+" stopped", func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id})
		if status.Code(err) == codes.NotFound {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if st.Status.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
			return false, nil
		}
		for _, c := range st.ContainersStatuses {
			if c.State == runtime.ContainerState_CONTAINER_RUNNING {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Error(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logLinesFrom returns the lines of a log file from offset on.
func logLinesFrom(t *testing.T, path string, offset int64) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", path, err))
	}
	return out
}

// grepLines returns the lines containing any of subs.
func grepLines(lines []string, subs ...string) []string {
	var out []string
	for _, l := range lines {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}
