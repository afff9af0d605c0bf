package taskio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// BenchmarkOutputToLog is one container's output through its FIFO into
// its CRI log: 100-byte lines written as fast as the reader takes them.
func BenchmarkOutputToLog(b *testing.B) {
	dir := b.TempDir()
	tio, err := Open(FIFOs(dir, false, true), filepath.Join(dir, "ctr.log"), logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tio.Shut()
	w, err := os.OpenFile(filepath.Join(dir, Stdout), os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
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
