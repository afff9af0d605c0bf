package taskio

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkOutputToLog is one container's output through its FIFO into
// its CRI log: 100-byte lines written as fast as the reader takes them.
func BenchmarkOutputToLog(b *testing.B) {
	tio, dir, _ := openTestIO(b)
	w := openWriter(b, dir, Stdout)
	// Stderr's writer comes and goes: only stdout is measured.
	openWriter(b, dir, Stderr).Close()
	chunk := bytes.Repeat(append(bytes.Repeat([]byte("x"), 99), '\n'), 40)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	w.Close()
	if !tio.Drain(time.Minute) {
		b.Fatal("output not drained within a minute")
	}
}
