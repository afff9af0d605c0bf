// Package oomscore keeps the oom_score_adj crishim asks runc for within what
// the kernel lets crishim set: without CAP_SYS_RESOURCE (these nodes do not
// grant it even to root) a value below the daemon's own makes runc fail with
// "can't get final child's PID from pipe: EOF", so every request is clamped.
package oomscore

import (
	"os"
	"strconv"
	"strings"
)

// Own reads the daemon's oom_score_adj, the floor for every value it asks
// runc for; 0 when it cannot be read.
func Own() int {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return v
}

// Clamp keeps requested within the kernel's range [-1000, 1000] and no lower
// than own.
func Clamp(requested int64, own int) int {
	v := int(max(min(requested, 1000), -1000))
	return max(v, own)
}
