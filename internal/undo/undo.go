// Package undo holds what sandbox and container share to take back a
// creation that failed halfway and to tear down what exists.
package undo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/sirupsen/logrus"
)

// Stack collects the undo of every step a creation completed, to run in
// reverse order when a later step fails.
type Stack []step

type step struct {
	what string
	fn   func(context.Context) error
}

// Add pushes the undo of a step that just completed; what names it in logs
// and errors.
func (s *Stack) Add(what string, fn func(context.Context) error) {
	*s = append(*s, step{what, fn})
}

// Run undoes every step, last first, also after one fails, and reports the
// failures (each also logged to log).
func (s Stack) Run(ctx context.Context, log *logrus.Entry) error {
	var errs []error
	for i := len(s) - 1; i >= 0; i-- {
		if err := s[i].fn(ctx); err != nil {
			log.WithError(err).Warnf("undo: %s", s[i].what)
			errs = append(errs, fmt.Errorf("%s: %w", s[i].what, err))
		}
	}
	return errors.Join(errs...)
}

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
