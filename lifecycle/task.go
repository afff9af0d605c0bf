package lifecycle

import (
	"context"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
)

// DeleteTask deletes the task of container id straight through the task
// service; a task that is not there is not an error. Unlike a lookup
// followed by a delete, it also finishes a delete containerd abandoned
// halfway (its caller gave up, or crishim died): the shim has already
// dropped such a task, so a lookup says NotFound, but containerd still
// holds it, and only a delete makes containerd let go of it and tell the
// shim to shut down once it serves nothing else. A shim serving a whole
// pod is otherwise never told, and outlives the pod.
func DeleteTask(ctx context.Context, client *containerd.Client, id string) error {
	_, err := client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id})
	if err = errdefs.FromGRPC(err); err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	// A concurrent delete (the exit watcher's) can finish first and let the
	// shim exit under this one, which then fails on the closed connection:
	// what counts is whether containerd still holds the task.
	if _, gerr := client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); errdefs.IsNotFound(errdefs.FromGRPC(gerr)) {
		return nil
	}
	return err
}
