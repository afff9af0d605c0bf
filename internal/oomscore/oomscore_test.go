package oomscore

import (
	"os"
	"strconv"
	"testing"
)

func TestClamp(t *testing.T) {
	for _, tc := range []struct {
		req  int64
		own  int
		want int
	}{
		{-998, 0, 0}, // the pause's wish on a daemon at 0
		{-998, -1000, -998},
		{500, 100, 500},
		{1000, 0, 1000},
		{2000, 0, 1000}, // beyond the kernel's range
		{0, 0, 0},
		{-10, 0, 0},
		{-5000, -1000, -1000},
	} {
		if got := Clamp(tc.req, tc.own); got != tc.want {
			t.Errorf("Clamp(%d, %d) = %d, want %d", tc.req, tc.own, got, tc.want)
		}
	}
}

// TestOwnReadsTheProcessScore raises this test process's own score (raising
// needs no privilege) and expects Own to report the new value.
func TestOwnReadsTheProcessScore(t *testing.T) {
	want := Own() + 7
	if want > 1000 {
		want = 1000
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(want)), 0); err != nil {
		t.Skipf("cannot set this process's oom_score_adj: %v", err)
	}
	if got := Own(); got != want {
		t.Fatalf("Own() = %d after setting %d", got, want)
	}
}
