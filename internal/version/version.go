// Package version carries crishim's build version, set by the linker:
// -X github.com/crishim/crishim/internal/version.Version=...
package version

// Version is crishim's release or git description.
var Version = "dev"

// CRIAPIVersion is the CRI API version crishim serves.
const CRIAPIVersion = "v1"

// RuntimeName is reported by the CRI Version RPC.
const RuntimeName = "crishim"
