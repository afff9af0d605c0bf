// Package bench drives CRI endpoints over gRPC with identical workloads,
// interleaved so that drift of the machine hits both alike, and reports
// latency percentiles, throughput, stop timings, daemon resource use and
// leftovers as a table of ratios between the two endpoints.
package bench

import (
	"math"
	"sort"
	"time"
)

// Summary is the distribution of one measure on one endpoint.
type Summary struct {
	N             int
	P50, P90, P99 time.Duration
	Mean, Max     time.Duration
}

// Percentile returns the q-quantile (0 ≤ q ≤ 1) of sorted by the
// nearest-rank method: the smallest sample with at least q·n samples at
// or below it. Interpolating would invent latencies no request had.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// Summarize computes the summary of samples (which it does not modify).
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return Summary{
		N:    len(s),
		P50:  Percentile(s, 0.50),
		P90:  Percentile(s, 0.90),
		P99:  Percentile(s, 0.99),
		Mean: total / time.Duration(len(s)),
		Max:  s[len(s)-1],
	}
}

// Ratio is b/a, or NaN when a is zero (nothing to compare against).
func Ratio(a, b float64) float64 {
	if a == 0 {
		return math.NaN()
	}
	return b / a
}
