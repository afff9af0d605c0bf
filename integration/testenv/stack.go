//go:build linux

package testenv

import "github.com/crishim/crishim/internal/stack"

// The pieces an environment is built from live in internal/stack, which the
// benchmark shares. These names keep the tests' spelling (testenv.Poll,
// testenv.Containerd, ...) so that moving the pieces out did not touch every
// test file.
type (
	Containerd        = stack.Containerd
	ContainerdOptions = stack.ContainerdOptions
	CRIPlugin         = stack.CRIPlugin
	Crishim           = stack.Crishim
	CrishimConfig     = stack.CrishimConfig
	Daemon            = stack.Daemon
	Image             = stack.Image
	ImageOptions      = stack.ImageOptions
	Network           = stack.Network
	Registry          = stack.Registry
)

const (
	RegistryAlias = stack.RegistryAlias
	CNIBinDir     = stack.CNIBinDir
	BusyboxBinary = stack.BusyboxBinary
)

var (
	BuildCrishim        = stack.BuildCrishim
	BuildPause          = stack.BuildPause
	BusyboxImage        = stack.BusyboxImage
	Dial                = stack.Dial
	Download            = stack.Download
	FreePort            = stack.FreePort
	MountsUnder         = stack.MountsUnder
	PauseImage          = stack.PauseImage
	Poll                = stack.Poll
	ProcessesWithArgs   = stack.ProcessesWithArgs
	RequireBinaries     = stack.RequireBinaries
	StartContainerd     = stack.StartContainerd
	StartContainerdWith = stack.StartContainerdWith
	StartCrishim        = stack.StartCrishim
	StartDaemon         = stack.StartDaemon
	StartRegistry       = stack.StartRegistry
	Tail                = stack.Tail
	WriteNetwork        = stack.WriteNetwork
	WriteRegistryHosts  = stack.WriteRegistryHosts
)
