package lifecycle

import (
	"context"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/protobuf"
	"github.com/sirupsen/logrus"
)

// AwaitExit blocks until the task of container id exits and returns its
// exit status; ok is false when the task is gone (deleted, or lost by
// containerd) without an exit to report. A broken wait - containerd
// restarting - is not an exit: it is set up again with a growing backoff,
// as the shim keeps the exit until the task is deleted. It returns early,
// with ok false, only when ctx ends.
//
// The wait runs in the calling goroutine. containerd's Task.Wait spends a
// goroutine of its own on every wait, and a node keeps one wait open per
// pod and per container for as long as they run.
func AwaitExit(ctx context.Context, client *containerd.Client, id string, log *logrus.Entry) (st containerd.ExitStatus, ok bool) {
	backoff := 100 * time.Millisecond
	for {
		resp, err := client.TaskService().Wait(ctx, &tasks.WaitRequest{ContainerID: id})
		if err == nil {
			return *containerd.NewExitStatus(resp.ExitStatus, protobuf.FromTimestamp(resp.ExitedAt), nil), true
		}
		err = errdefs.FromGRPC(err)
		if errdefs.IsNotFound(err) || ctx.Err() != nil {
			return containerd.ExitStatus{}, false
		}
		log.WithError(err).Warn("lost the task wait; waiting again")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return containerd.ExitStatus{}, false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
