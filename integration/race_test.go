//go:build linux && race

package integration

// raceEnabled builds crishim with the race detector when the tests run with it.
const raceEnabled = true
