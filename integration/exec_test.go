//go:build linux

package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecSyncTimeout checks that the runtime enforces the exec timeout:
// the call returns soon after it with DeadlineExceeded (what the kubelet
// reads as a timed-out probe) and the process is gone.
func TestExecSyncTimeout(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "exectimeout")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))

	// A marker argument identifies the exec'd process in ps.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"sleep", "31"}, Timeout: 1})
	elapsed := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync of `sleep 31` with a 1s timeout: %v, want code DeadlineExceeded", err)
	}
	if elapsed < time.Second || elapsed > 10*time.Second {
		t.Errorf("ExecSync with a 1s timeout returned after %s", elapsed)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := c.execSync(ctrID, 5, "ps", "-o", "pid,args")
		if !strings.Contains(string(res.Stdout), "sleep 31") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the timed-out exec process still runs:\n%s", res.Stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The container is unharmed and exec still works.
	if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state %v after an exec timeout, want RUNNING", st.State)
	}
	if res := c.execSync(ctrID, 0, "echo", "still-here"); res.ExitCode != 0 || string(res.Stdout) != "still-here\n" {
		t.Errorf("exec after timeout: exit %d stdout %q", res.ExitCode, res.Stdout)
	}
	// A command that does not exist fails without breaking the RPC contract:
	// either a non-zero exit code or an error, never a hang.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	res, err := c.rt.ExecSync(ctx2, &runtime.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"/no/such/binary"}, Timeout: 5})
	if err == nil && res.ExitCode == 0 {
		t.Errorf("exec of a missing binary succeeded: %+v", res)
	}
}

// TestContainerLogs checks the CRI log format: each stream's lines, in
// order, with RFC3339Nano timestamps, and a line longer than any buffer
// split into partial records that join back into it.
func TestContainerLogs(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "logs")
	podID := c.runPod(pod)
	const longLen = 40000
	cfg := containerConfig("logger", env.BusyboxImage, "sh", "-c",
		`echo first; echo oops >&2; echo second; head -c 40000 /dev/zero | tr '\0' x; echo; echo "  spaced  out  "; printf 'no newline at end'`)
	ctrID := c.startContainer(podID, pod, cfg)
	st := c.waitContainerState(ctrID, runtime.ContainerState_CONTAINER_EXITED, 20*time.Second)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("exit code %d reason %q, want 0 Completed", st.ExitCode, st.Reason)
	}
	long := strings.Repeat("x", longLen)
	logPath := filepath.Join(pod.LogDirectory, cfg.LogPath)
	lines := waitLog(t, logPath, 10*time.Second, func(l map[string][]string) bool {
		return len(l["stdout"]) >= 5 && len(l["stderr"]) >= 1
	})
	want := []string{"first", "second", long, "  spaced  out  ", "no newline at end"}
	if got := lines["stdout"]; len(got) != len(want) {
		t.Errorf("stdout has %d lines, want %d: %q", len(got), len(want), truncateAll(got))
	} else {
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("stdout line %d = %q, want %q", i, truncate(got[i], 80), truncate(want[i], 80))
			}
		}
	}
	if got := lines["stderr"]; len(got) != 1 || got[0] != "oops" {
		t.Errorf("stderr lines %q, want [oops]", got)
	}
}

func truncateAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = truncate(s, 60)
	}
	return out
}
