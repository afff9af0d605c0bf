// Package runtimeopts picks what containerd creates pause containers and
// containers with: the runtime (shim), its options and the snapshotter, so
// that a pod's containers always run like its pause and every lookup of a
// snapshot asks the snapshotter that made it.
package runtimeopts

import (
	"github.com/containerd/containerd"
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

// Snapshotter resolves the configured snapshotter: empty means containerd's
// default. Resolved before every use, not only at creation: the client's
// SnapshotService("") does not resolve it, and a snapshot asked of the wrong
// snapshotter is not found, which cleanup takes for already gone.
func Snapshotter(configured string) string {
	if configured == "" {
		return containerd.DefaultSnapshotter
	}
	return configured
}
