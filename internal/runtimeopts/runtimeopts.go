// Package runtimeopts picks the containerd runtime (shim) that runs pause
// containers and containers, and the options it is started with, so that a
// pod's containers always run like its pause.
package runtimeopts

import (
	runcoptions "github.com/containerd/containerd/api/types/runc/options"

	"github.com/crishim/crishim/internal/cgroup"
)

// RuncV2 is containerd's runc shim, crishim's default runtime.
const RuncV2 = "io.containerd.runc.v2"

// Name resolves the configured runtime: empty means runc.
func Name(configured string) string {
	if configured == "" {
		return RuncV2
	}
	return configured
}

// Options returns the options for containerd.WithRuntime: the runc shim
// must be told which cgroup driver the spec's cgroupsPath is written for
// (cgroup.OCIPath), or it reads "slice:prefix:name" as a directory. Other
// shims get none: they would not know runc's options type.
func Options(runtime, driver string) interface{} {
	if Name(runtime) != RuncV2 {
		return nil
	}
	return &runcoptions.Options{SystemdCgroup: driver == cgroup.DriverSystemd}
}
