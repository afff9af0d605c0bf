// Package undo holds what sandbox and container share to take back work
// that failed halfway or to tear down what exists.
package undo

import (
	"context"
	"time"

	"github.com/containerd/containerd/namespaces"
)

// Timeout bounds one undo or teardown: long enough for a containerd that
// is slow under load to delete a task, container and snapshot, short
// enough that a hung containerd does not hold the caller forever.
const Timeout = 2 * time.Minute

// Context is a fresh context for undo and teardown work that must finish
// even when the request that started it was cancelled, in containerd
// namespace ns (none when empty).
func Context(ns string) (context.Context, context.CancelFunc) {
	ctx := context.Background()
	if ns != "" {
		ctx = namespaces.WithNamespace(ctx, ns)
	}
	return context.WithTimeout(ctx, Timeout)
}
