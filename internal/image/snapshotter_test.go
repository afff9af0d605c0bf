package image

import (
	"testing"

	"github.com/containerd/containerd/mount"
)

func TestUpperDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []mount.Mount
		want   string
	}{
		{"overlay", []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"index=off", "workdir=/s/snapshots/7/work", "upperdir=/s/snapshots/7/fs", "lowerdir=/s/snapshots/3/fs"}}}, "/s/snapshots/7/fs"},
		{"no parent: a rw bind", []mount.Mount{{Type: "bind", Source: "/s/snapshots/8/fs", Options: []string{"rbind", "rw"}}}, "/s/snapshots/8/fs"},
		{"a view: ro bind", []mount.Mount{{Type: "bind", Source: "/s/snapshots/3/fs", Options: []string{"ro", "rbind"}}}, ""},
		{"a view: overlay without upper", []mount.Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}, ""},
		{"none", nil, ""},
	} {
		if got := upperDir(tc.mounts); got != tc.want {
			t.Errorf("%s: upperDir = %q, want %q", tc.name, got, tc.want)
		}
	}
}
