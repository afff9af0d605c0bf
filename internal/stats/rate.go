package stats

import (
	"sync"
	"time"
)

// MinRateInterval is the shortest time between the two samples of a CPU
// rate: closer samples (two clients asking at once) make a noisy rate, so
// the previous rate is reported again instead.
const MinRateInterval = time.Second

// Rates remembers the last CPU sample of each container or pod, in
// memory only: after a restart the first sample has no rate, as after a
// container start.
type Rates struct {
	mu   sync.Mutex
	last map[string]rateState
}

type rateState struct {
	at   time.Time
	cpu  uint64
	rate *uint64
}

// NewRates returns an empty rate tracker.
func NewRates() *Rates { return &Rates{last: map[string]rateState{}} }

// Observe records a cumulative CPU reading for id and returns the usage
// in nano cores since the previous reading, or nil when there is none
// to compare with.
func (r *Rates) Observe(id string, at time.Time, cpu uint64) *uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, ok := r.last[id]
	next, rate := nextRate(prev, ok, at, cpu)
	r.last[id] = next
	return rate
}

// nextRate is the rate arithmetic: a counter that went backwards (a
// restarted container) or a clock that did starts over.
func nextRate(prev rateState, havePrev bool, at time.Time, cpu uint64) (rateState, *uint64) {
	fresh := rateState{at: at, cpu: cpu}
	if !havePrev || !at.After(prev.at) || cpu < prev.cpu {
		return fresh, nil
	}
	elapsed := at.Sub(prev.at)
	if elapsed < MinRateInterval {
		return prev, copyPtr(prev.rate)
	}
	// ns of CPU per s of wall time; split to stay within uint64 for
	// deltas of many core-hours.
	delta := cpu - prev.cpu
	secs, frac := delta/uint64(elapsed), delta%uint64(elapsed)
	v := secs*uint64(time.Second) + frac*uint64(time.Second)/uint64(elapsed)
	fresh.rate = &v
	return fresh, copyPtr(&v)
}

func copyPtr(p *uint64) *uint64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Forget drops the samples of every id keep rejects.
func (r *Rates) Forget(keep func(id string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.last {
		if !keep(id) {
			delete(r.last, id)
		}
	}
}

// Len is the number of ids with a sample.
func (r *Rates) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.last)
}
