package idprefix

import (
	"errors"
	"testing"

	"github.com/containerd/containerd/errdefs"
)

func TestResolve(t *testing.T) {
	objects := map[string]int{"abc123": 1, "abd456": 2, "ab": 3}
	for _, tc := range []struct {
		id   string
		want int
		err  error
	}{
		{"abc123", 1, nil},
		{"abc", 1, nil},
		{"abd", 2, nil},
		{"ab", 3, nil}, // a full ID wins over the IDs it prefixes
		{"a", 0, errdefs.ErrInvalidArgument},
		{"", 0, errdefs.ErrInvalidArgument},
		{"x", 0, errdefs.ErrNotFound},
		{"abc1234", 0, errdefs.ErrNotFound},
	} {
		got, err := Resolve(objects, tc.id, "thing")
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Resolve(%q): %v, want %v", tc.id, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %d, %v; want %d", tc.id, got, err, tc.want)
		}
	}
}
