package server

// idleReads are the calls an idle node's kubelet keeps making (relists,
// status checks for log rotation, stats, version and health checks): reads
// answered from memory or a few files, which leave GOMAXPROCS lowered
// (internal/gomaxprocs). Every other call is work, or its start: it gives
// the Go runtime its default before it runs.
var idleReads = map[string]bool{
	"Version":               true,
	"Status":                true,
	"RuntimeConfig":         true,
	"ListPodSandbox":        true,
	"PodSandboxStatus":      true,
	"ListContainers":        true,
	"ContainerStatus":       true,
	"ContainerStats":        true,
	"ListContainerStats":    true,
	"PodSandboxStats":       true,
	"ListPodSandboxStats":   true,
	"ListMetricDescriptors": true,
	"ListPodSandboxMetrics": true,
	"ImageFsInfo":           true,
	"ListImages":            true,
	"ImageStatus":           true,
}
