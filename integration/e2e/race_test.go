//go:build linux && race

package e2e

// raceEnabled builds crishim with the race detector when the tests run with it.
const raceEnabled = true
