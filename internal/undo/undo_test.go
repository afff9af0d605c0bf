package undo

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
)

func TestContext(t *testing.T) {
	before := time.Now()
	ctx, cancel := Context("crishim")
	defer cancel()
	if ns, ok := namespaces.Namespace(ctx); !ok || ns != "crishim" {
		t.Errorf("namespace %q, %v; want crishim", ns, ok)
	}
	dl, ok := ctx.Deadline()
	if !ok || dl.Before(before.Add(Timeout)) || dl.After(time.Now().Add(Timeout)) {
		t.Errorf("deadline %v (ok %v), want %v from now", dl, ok, Timeout)
	}
	if ctx.Err() != nil {
		t.Errorf("fresh context already done: %v", ctx.Err())
	}
	cancel()
	if ctx.Err() != context.Canceled {
		t.Errorf("after cancel: %v", ctx.Err())
	}
	ctx, cancel = Context("")
	defer cancel()
	if ns, ok := namespaces.Namespace(ctx); ok {
		t.Errorf("no namespace asked, got %q", ns)
	}
}
