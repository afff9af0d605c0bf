package undo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
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

func TestStackRunsLastFirstThroughFailures(t *testing.T) {
	var ran []string
	var s Stack
	boom1, boom2 := errors.New("boom1"), errors.New("boom2")
	step := func(name string, err error) {
		s.Add(name, func(ctx context.Context) error {
			if _, ok := namespaces.Namespace(ctx); !ok {
				t.Errorf("%s: undo got a context without the namespace", name)
			}
			ran = append(ran, name)
			return err
		})
	}
	step("make dir", nil)
	step("create container", boom1)
	step("start task", nil)
	step("attach network", boom2)

	logger, hook := test.NewNullLogger()
	ctx, cancel := Context("crishim")
	defer cancel()
	err := s.Run(ctx, logrus.NewEntry(logger))
	if want := []string{"attach network", "start task", "create container", "make dir"}; !slices.Equal(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if !errors.Is(err, boom1) || !errors.Is(err, boom2) {
		t.Errorf("Run = %v, want both failures", err)
	}
	if err == nil || !strings.Contains(err.Error(), "create container: boom1") || !strings.Contains(err.Error(), "attach network: boom2") {
		t.Errorf("Run = %v, want each failure named by its step", err)
	}
	if n := len(hook.AllEntries()); n != 2 {
		t.Errorf("%d log entries, want one per failed step", n)
	}

	var empty Stack
	if err := empty.Run(ctx, logrus.NewEntry(logger)); err != nil {
		t.Errorf("empty stack: %v", err)
	}
}
