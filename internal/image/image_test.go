package image

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLockRef(t *testing.T) {
	s := New(nil, Config{})
	ctx := context.Background()
	unlock, err := s.lockRef(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another reference is not held up.
	unlockB, err := s.lockRef(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()

	// The same reference waits until the holder is done, unless cancelled.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := s.lockRef(cctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held reference: %v, want deadline exceeded", err)
	}
	got := make(chan func(), 1)
	go func() {
		u, err := s.lockRef(ctx, "a")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	select {
	case <-got:
		t.Fatal("second lock acquired while the first is held")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	(<-got)()

	s.pullMu.Lock()
	defer s.pullMu.Unlock()
	if len(s.pulling) != 0 {
		t.Errorf("lock table not emptied: %v", s.pulling)
	}
}
