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
	if _, ok := r.Holder("n"); ok {
		t.Fatal("failed creation kept the name")
	}
}

// A client that gives up leaves the work running; its retry gets the ID
// once, whether it arrives during the work or after it.
func TestAbandonedResultGoesToRetry(t *testing.T) {
	for _, retryDuring := range []bool{true, false} {
		r := New("pod", time.Minute)
		release := make(chan struct{})
		var workCtxErr error
		finished := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(10 * time.Millisecond); cancel() }()
		_, err := r.Create(ctx, "n", "id1", func(wctx context.Context) error {
			<-release
			workCtxErr = wctx.Err()
			close(finished)
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned request: %v", err)
		}
		if !retryDuring {
			close(release)
			<-finished
		} else {
			go func() { time.Sleep(10 * time.Millisecond); close(release) }()
		}
		id, err := r.Create(context.Background(), "n", "id2", func(context.Context) error { t.Error("retry created a twin"); return nil })
		if err != nil || id != "id1" {
			t.Fatalf("retry (during=%v): %q %v", retryDuring, id, err)
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
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = r.Create(context.Background(), "n", "id", func(context.Context) error {
				mu.Lock()
				runs++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
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
