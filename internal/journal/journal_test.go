package journal

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type rec struct {
	Path string
	N    int
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	j := New(dir)
	if ids, err := j.Entries(); err != nil || len(ids) != 0 {
		t.Fatalf("empty journal: %v %v", ids, err)
	}
	if err := j.Write("a", rec{"x", 1}); err != nil {
		t.Fatal(err)
	}
	if err := j.Write("a", rec{"y", 2}); err != nil {
		t.Fatal(err)
	}
	// A temporary file from a crash mid-write is not an entry.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-b-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := j.Entries()
	if err != nil || !reflect.DeepEqual(ids, []string{"a"}) {
		t.Fatalf("entries %v %v", ids, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-b-123")); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	var got rec
	if err := j.Read("a", &got); err != nil || got != (rec{"y", 2}) {
		t.Fatalf("read %+v %v", got, err)
	}
	if err := j.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := j.Remove("a"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	for _, bad := range []string{"", "..", "../x", ".tmp-x", "a/b"} {
		if err := j.Write(bad, rec{}); err == nil {
			t.Errorf("Write(%q) accepted", bad)
		}
	}
}
