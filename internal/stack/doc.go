// Package stack starts and stops the pieces of a private container stack on
// this machine: a containerd daemon, a local registry serving images built
// from Debian's busybox-static and the project's pause binary, a CNI bridge
// network, and a crishim process. The integration tests (integration/testenv)
// and the benchmark (internal/bench) both build their environments from it,
// so neither imports the other and a production binary never links test
// harness code.
package stack
