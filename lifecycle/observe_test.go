package lifecycle

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestObserveStopsReportsOutcome(t *testing.T) {
	var mu sync.Mutex
	outcomes := map[string]bool{}
	ObserveStops(func(id string, killed bool) {
		mu.Lock()
		outcomes[id] = killed
		mu.Unlock()
	})
	defer ObserveStops(nil)

	s := testStopper()
	graceful := newFakeProcess()
	stubborn := newFakeProcess(syscall.SIGTERM)
	for id, p := range map[string]*fakeProcess{"observe-graceful": graceful, "observe-stubborn": stubborn} {
		req := StopRequest{ID: id, Process: p, Exited: p.exited, Signal: syscall.SIGTERM, Grace: 100 * time.Millisecond}
		if err := s.Stop(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	// The loop reports after the exit that Stop returned on.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		killedG, okG := outcomes["observe-graceful"]
		killedS, okS := outcomes["observe-stubborn"]
		mu.Unlock()
		if okG && okS {
			if killedG || !killedS {
				t.Fatalf("outcomes: graceful container killed=%v, stubborn killed=%v", killedG, killedS)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outcomes after 5s: %v", outcomes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
