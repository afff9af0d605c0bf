// Package idprefix resolves the IDs clients pass to crishim: a full ID, or
// (as crictl allows) a prefix that names exactly one object.
package idprefix

import (
	"fmt"
	"strings"

	"github.com/containerd/containerd/errdefs"
)

// Resolve returns the value under id in objects, or under the one key id is
// a prefix of. kind names the objects in errors ("container", "sandbox").
// An empty or ambiguous id is errdefs.ErrInvalidArgument, an unknown one
// errdefs.ErrNotFound. The caller holds whatever lock guards objects.
func Resolve[T any](objects map[string]T, id, kind string) (T, error) {
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s id is required: %w", kind, errdefs.ErrInvalidArgument)
	}
	if v, ok := objects[id]; ok {
		return v, nil
	}
	var (
		found T
		n     int
	)
	for key, v := range objects {
		if strings.HasPrefix(key, id) {
			if n++; n > 1 {
				return zero, fmt.Errorf("%s id prefix %q is ambiguous: %w", kind, id, errdefs.ErrInvalidArgument)
			}
			found = v
		}
	}
	if n == 0 {
		return zero, fmt.Errorf("%s %s: %w", kind, id, errdefs.ErrNotFound)
	}
	return found, nil
}
