// Package lifecycle owns how containers stop and what runs around start and
// stop, with the semantics of the Kubernetes pod lifecycle: stop signal,
// grace period, SIGKILL at the deadline, postStart and preStop hooks.
package lifecycle
