package container

import (
	"errors"
	"testing"

	"github.com/containerd/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestValidateConfigLogPath(t *testing.T) {
	pod := &runtime.PodSandboxConfig{LogDirectory: "/var/log/pods/p"}
	for _, tc := range []struct {
		logPath, want string
		bad           bool
	}{
		{"c/0.log", "/var/log/pods/p/c/0.log", false},
		{"", "", false},
		{"a/../c.log", "/var/log/pods/p/c.log", false},
		{"../escape.log", "", true},
		{"a/../../escape.log", "", true},
		{"/var/log/pods/p/c.log", "", true}, // absolute, even inside
		{"/etc/passwd", "", true},
		{".", "", true},
	} {
		cfg := &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "c"},
			Image:    &runtime.ImageSpec{Image: "busybox"},
			LogPath:  tc.logPath,
		}
		got, err := ValidateConfig(cfg, pod)
		if tc.bad {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("log path %q: %q, %v; want InvalidArgument", tc.logPath, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("log path %q: %q, %v; want %q", tc.logPath, got, err, tc.want)
		}
	}
	for name, cfg := range map[string]*runtime.ContainerConfig{
		"nil":      nil,
		"no name":  {Image: &runtime.ImageSpec{Image: "busybox"}},
		"no image": {Metadata: &runtime.ContainerMetadata{Name: "c"}},
	} {
		if _, err := ValidateConfig(cfg, pod); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}
