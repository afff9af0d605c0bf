package names

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
)

func TestCreateThenDuplicate(t *testing.T) {
	r := New("pod", time.Minute)
	id, err := r.Create(context.Background(), "n", "id1", func(context.Context) error { return nil })
	if err != nil || id != "id1" {
		t.Fatalf("first: %q %v", id, err)
	}
	_, err = r.Create(context.Background(), "n", "id2", func(context.Context) error { t.Error("ran twice"); return nil })
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second: %v, want AlreadyExists", err)
	}
	r.Release("n", "id1")
	if id, err := r.Create(context.Background(), "n", "id3", func(context.Context) error { return nil }); err != nil || id != "id3" {
		t.Fatalf("after release: %q %v", id, err)
	}
}

func TestFailureFreesName(t *testing.T) {
	r := New("pod", time.Minute)
	boom := errors.New("boom")
	if _, err := r.Create(context.Background(), "n", "id1", func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if other, ok := r.Add("n", "id2"); !ok {
		t.Fatalf("failed creation kept the name for %s", other)
	}
}

// waitCtx tells the test when a request starts to wait: Create asks for
// Done only once it waits - for the work it started, or for the one under
// way for its name. That is the gate for "a request arrives during the
// work", with no sleep that may or may not overlap the work.
type waitCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func newWaitCtx(ctx context.Context) *waitCtx {
	return &waitCtx{Context: ctx, waiting: make(chan struct{})}
}

func (c *waitCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// workDone returns the done channel of the creation under way for name.
func workDone(t *testing.T, r *Registry, name string) <-chan struct{} {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.names[name]
	if !ok {
		t.Fatalf("no creation recorded for %q", name)
	}
	return e.done
}

// A client that gives up leaves the work running; its retry gets the ID
// once, whether it arrives during the work or after it.
func TestAbandonedResultGoesToRetry(t *testing.T) {
	for _, retryDuring := range []bool{true, false} {
		r := New("pod", time.Minute)
		started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var workCtxErr error
		ctx, cancel := context.WithCancel(context.Background())
		// The client gives up while the work is blocked on release.
		go func() { <-started; cancel() }()
		_, err := r.Create(ctx, "n", "id1", func(wctx context.Context) error {
			close(started)
			<-release
			workCtxErr = wctx.Err()
			close(finished)
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned request: %v", err)
		}
		select {
		case <-finished:
			t.Fatal("the work ended before it was released")
		default:
		}
		done := workDone(t, r, "n")

		retryCtx := newWaitCtx(context.Background())
		type result struct {
			id  string
			err error
		}
		retried := make(chan result, 1)
		retry := func() {
			id, err := r.Create(retryCtx, "n", "id2", func(context.Context) error { t.Error("retry created a twin"); return nil })
			retried <- result{id, err}
		}
		if retryDuring {
			go retry()
			<-retryCtx.waiting // the retry waits for the work, which is still blocked
			close(release)
		} else {
			close(release)
			<-done
			retry()
		}
		res := <-retried
		if res.err != nil || res.id != "id1" {
			t.Fatalf("retry (during=%v): %q %v", retryDuring, res.id, res.err)
		}
		<-finished
		if workCtxErr != nil {
			t.Errorf("the work's context was cancelled with the client's: %v", workCtxErr)
		}
		if _, err := r.Create(context.Background(), "n", "id3", func(context.Context) error { return nil }); !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Errorf("second retry: %v, want AlreadyExists", err)
		}
	}
}

func TestConcurrentSameName(t *testing.T) {
	r := New("pod", time.Minute)
	var mu sync.Mutex
	runs := 0
	var wg sync.WaitGroup
	results := make([]error, 8)
	ctxs := make([]*waitCtx, len(results))
	for i := range ctxs {
		ctxs[i] = newWaitCtx(context.Background())
	}
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = r.Create(ctxs[i], "n", "id", func(context.Context) error {
				mu.Lock()
				runs++
				mu.Unlock()
				// The work ends only once every request waits: all of
				// them overlap it.
				for _, c := range ctxs {
					<-c.waiting
				}
				return nil
			})
		}()
	}
	wg.Wait()
	ok, exists := 0, 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errdefs.ErrAlreadyExists):
			exists++
		default:
			t.Errorf("unexpected %v", err)
		}
	}
	if runs != 1 || ok != 1 || exists != len(results)-1 {
		t.Errorf("runs %d, successes %d, AlreadyExists %d", runs, ok, exists)
	}
}

func TestAdd(t *testing.T) {
	r := New("pod", time.Minute)
	if _, ok := r.Add("n", "a"); !ok {
		t.Fatal("first Add refused")
	}
	if other, ok := r.Add("n", "b"); ok || other != "a" {
		t.Fatalf("second Add: %q %v", other, ok)
	}
	if _, err := r.Create(context.Background(), "n", "c", func(context.Context) error { return nil }); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("Create over a recovered name: %v", err)
	}
}
