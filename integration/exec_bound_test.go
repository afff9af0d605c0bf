//go:build linux

package integration

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecSyncBoundedByTimeout runs commands that leave a child holding
// their stdout open: ExecSync still returns within about its timeout,
// whether the command ignores SIGTERM and has to be killed (a timeout) or
// exits by itself (its output so far and its exit code). The bound is
// generous for a loaded machine; the old waits (5 s for the output, then 5
// s more before deleting the process) overran it.
func TestExecSyncBoundedByTimeout(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	pod := podConfig(t, "execbound")
	podID := c.runPod(pod)
	ctrID := c.startContainer(podID, pod, containerConfig("idle", env.BusyboxImage, idleCmd...))
	const timeout = 1
	bound := (timeout + 5) * time.Second

	run := func(script string) (*runtime.ExecSyncResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"sh", "-c", script}, Timeout: timeout})
		return res, time.Since(start), err
	}

	_, took, err := run(`trap "" TERM; (sleep 60) & sleep 60`)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync past its timeout: %v, want DeadlineExceeded", err)
	}
	if took < timeout*time.Second || took > bound {
		t.Errorf("ExecSync with a %ds timeout of a command that outlives it returned after %s, want within %s", timeout, took, bound)
	}
	t.Logf("timed-out command holding its output: ExecSync returned after %s", took.Round(time.Millisecond))

	res, took, err := run(`(trap "" TERM; sleep 61) & echo done`)
	if err != nil || res.ExitCode != 0 || string(res.Stdout) != "done\n" {
		t.Errorf("ExecSync of a command leaving a child behind: %v exit %d stdout %q, want exit 0 and %q", err, res.GetExitCode(), res.GetStdout(), "done\n")
	}
	if took > bound {
		t.Errorf("ExecSync with a %ds timeout of a command that exits at once but leaves its output open returned after %s, want within %s", timeout, took, bound)
	}
	t.Logf("exited command whose child holds its output: ExecSync returned after %s", took.Round(time.Millisecond))

	if st := c.containerStatus(ctrID); st.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %v after the execs, want RUNNING", st.State)
	}
	if res := c.execSync(ctrID, 5, "echo", "still-here"); string(res.Stdout) != "still-here\n" {
		t.Errorf("exec afterwards: exit %d stdout %q", res.ExitCode, res.Stdout)
	}
}
