// Package names reserves the unique names of pods and containers and runs
// their creation so that a client that gives up and retries gets the
// object it asked for, not a "name is reserved" error or a twin.
//
// The rule, for one name (the kubelet's name_namespace_uid_attempt key):
//
//   - The first request creates the object. Its work runs detached from
//     the client's context (bounded by the registry's timeout), so a client
//     deadline never leaves the object half made.
//   - If that client is still waiting when the work ends, it gets the
//     result. A concurrent request for the same name waits for the work,
//     then gets AlreadyExists naming the ID: two requests, one object.
//   - If the client gave up (context cancelled or deadline exceeded), the
//     result is kept for the retry: the next request for the name - one
//     already waiting, or one arriving later - gets the ID as a success,
//     exactly once. Later requests get AlreadyExists.
//   - If the work fails, the name is free again; a request that was waiting
//     for it tries the creation itself.
//
// The "kept for the retry" state lives in memory only: after a crishim
// restart a completed object's name answers AlreadyExists, and the
// kubelet moves on to a new attempt as it does for any such error.
package names

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/errdefs"
)

// Registry holds the names of one kind of object ("pod sandbox", "container").
type Registry struct {
	kind    string
	timeout time.Duration

	mu    sync.Mutex
	names map[string]*entry
}

type entry struct {
	id string
	// done is closed when the creation ended; err is its failure.
	done chan struct{}
	err  error
	// abandoned: the creating client left before the result.
	abandoned bool
	// delivered: some request has been given the ID.
	delivered bool
}

// New returns a registry; timeout bounds each detached creation.
func New(kind string, timeout time.Duration) *Registry {
	return &Registry{kind: kind, timeout: timeout, names: map[string]*entry{}}
}

// Add records a name that an existing object (found at startup) holds.
// It reports the ID already holding the name, if another one does.
func (r *Registry) Add(name, id string) (other string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, exists := r.names[name]; exists && e.id != id {
		return e.id, false
	}
	done := make(chan struct{})
	close(done)
	r.names[name] = &entry{id: id, done: done, delivered: true}
	return "", true
}

// Release frees name if id holds it (the object was removed).
func (r *Registry) Release(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.names[name]; ok && e.id == id {
		delete(r.names, name)
	}
}

func (r *Registry) exists(name, id string) error {
	return fmt.Errorf("%s name %q is reserved for %s: %w", r.kind, name, id, errdefs.ErrAlreadyExists)
}

// Create returns the ID of the object named name: it runs create for a
// new object with ID id, or answers from the creation already made or
// under way for the name, following the package rule.
func (r *Registry) Create(ctx context.Context, name, id string, create func(ctx context.Context) error) (string, error) {
	for {
		r.mu.Lock()
		e, ok := r.names[name]
		if !ok {
			e = &entry{id: id, done: make(chan struct{})}
			r.names[name] = e
			r.mu.Unlock()
			return r.run(ctx, name, e, create)
		}
		r.mu.Unlock()

		select {
		case <-e.done:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		r.mu.Lock()
		switch {
		case e.err != nil:
			// Failed and released: try it ourselves.
			r.mu.Unlock()
			continue
		case e.abandoned && !e.delivered:
			e.delivered = true
			r.mu.Unlock()
			return e.id, nil
		default:
			r.mu.Unlock()
			return "", r.exists(name, e.id)
		}
	}
}

// run does the creation detached from the client and waits for it or the client.
func (r *Registry) run(ctx context.Context, name string, e *entry, create func(context.Context) error) (string, error) {
	go func() {
		// Values (namespace, logging fields) stay; cancellation does not.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		err := create(wctx)
		r.mu.Lock()
		e.err = err
		if err != nil && r.names[name] == e {
			delete(r.names, name)
		}
		close(e.done)
		r.mu.Unlock()
	}()
	select {
	case <-e.done:
	case <-ctx.Done():
		// Even when the work finished at this very moment, this client gets
		// nothing: the result waits for its retry.
		r.mu.Lock()
		defer r.mu.Unlock()
		e.abandoned = true
		return "", ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.err != nil {
		return "", e.err
	}
	e.delivered = true
	return e.id, nil
}
