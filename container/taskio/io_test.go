package taskio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The stdin FIFO carries what is written to Stdin until CloseStdin, whose
// first call alone closes it: the reader (the container's side) then sees
// EOF, and later writes fail with ErrStdinClosed instead of reaching a
// closed file.
func TestStdinClosesOnce(t *testing.T) {
	dir := t.TempDir()
	tio, err := Open(FIFOs(dir, true, false), filepath.Join(dir, "ctr.log"), logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tio.Shut()
	if !tio.HasStdin() {
		t.Fatal("IO opened with a stdin FIFO says it has none")
	}
	// Blocks until crishim's end is open, as the shim's open does.
	r, err := os.OpenFile(filepath.Join(dir, "stdin"), os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A stdin left open would block the reads below for good.
	if err := r.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}

	if _, err := io.WriteString(tio.Stdin(), "hello\n"); err != nil {
		t.Fatalf("write to stdin: %v", err)
	}
	got := make([]byte, len("hello\n"))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "hello\n" {
		t.Fatalf("read %q, %v; want %q", got, err, "hello\n")
	}

	if !tio.CloseStdin() {
		t.Fatal("first CloseStdin did not close stdin")
	}
	if tio.CloseStdin() {
		t.Error("second CloseStdin claims to have closed stdin again")
	}
	if n, err := r.Read(got); err != io.EOF {
		t.Errorf("container side after CloseStdin: %d bytes, %v; want EOF", n, err)
	}
	if _, err := io.WriteString(tio.Stdin(), "late\n"); !errors.Is(err, ErrStdinClosed) {
		t.Errorf("write after CloseStdin: %v, want ErrStdinClosed", err)
	}
}

func TestNoStdin(t *testing.T) {
	dir := t.TempDir()
	tio, err := Open(FIFOs(dir, false, true), "", logrus.NewEntry(logrus.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tio.Shut()
	if tio.HasStdin() {
		t.Error("IO opened without a stdin FIFO says it has one")
	}
	if _, err := os.Stat(filepath.Join(dir, "stdin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stdin FIFO made for a container without stdin: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stderr")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stderr FIFO made for a terminal, which merges both streams into stdout: %v", err)
	}
	if _, err := tio.Stdin().Write([]byte("x")); !errors.Is(err, ErrStdinClosed) {
		t.Errorf("write without a stdin: %v, want ErrStdinClosed", err)
	}
	if tio.CloseStdin() {
		t.Error("CloseStdin without a stdin claims to have closed it")
	}
}
