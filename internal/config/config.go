// Package config holds crishim's configuration: its defaults, the TOML file
// that overrides them and the command-line flags that override both.
package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml"
)

// DefaultPath is where `crishim serve` looks for its configuration file.
const DefaultPath = "/etc/crishim/config.toml"

// Config is the whole of crishim's configuration. Each field is both a TOML
// key and a `crishim serve` flag of the same name.
type Config struct {
	// Listen is the CRI endpoint, a unix:// URL.
	Listen string `toml:"listen" comment:"CRI endpoint the kubelet and crictl connect to (unix socket, mode 0660)"`
	// ContainerdAddress is the containerd daemon's socket.
	ContainerdAddress string `toml:"containerd-address" comment:"containerd socket"`
	// ContainerdNamespace keeps crishim's objects apart from other clients
	// of the same containerd, its built-in CRI plugin ("k8s.io") included.
	ContainerdNamespace string `toml:"containerd-namespace" comment:"containerd namespace for crishim's images, containers and snapshots"`
	// Root holds persistent per-pod files.
	Root string `toml:"root" comment:"persistent state directory"`
	// State holds files that must not outlive a reboot: FIFOs, netns mounts, /dev/shm mounts.
	State string `toml:"state" comment:"volatile state directory (FIFOs, network namespaces, shm mounts)"`
	// CNIConfDir holds CNI network configs; crishim uses the first one in
	// lexical order, or a built-in bridge when there is none.
	CNIConfDir string `toml:"cni-conf-dir" comment:"CNI network configurations; a built-in bridge (crishim0, 10.88.0.0/16) is used when empty"`
	// CNIBinDir is a colon-separated search path for CNI plugin binaries.
	CNIBinDir string `toml:"cni-bin-dir" comment:"colon-separated CNI plugin directories"`
	// RegistryConfigDir holds per-registry hosts.toml files, containerd's format.
	RegistryConfigDir string `toml:"registry-config-dir" comment:"registry host configurations (containerd hosts.toml directory layout)"`
	// SandboxImage is the pause image; empty means the embedded one.
	SandboxImage string `toml:"sandbox-image" comment:"pause image for pod sandboxes; empty: the embedded crishim pause image"`
	// CgroupDriver is "cgroupfs" or "systemd"; empty means detect.
	CgroupDriver string `toml:"cgroup-driver" comment:"cgroupfs or systemd; empty: systemd when PID 1 is systemd, else cgroupfs"`
	// Snapshotter is the containerd snapshotter for images and containers.
	Snapshotter string `toml:"snapshotter" comment:"containerd snapshotter"`
	// Runtime is the containerd shim that runs pods.
	Runtime string `toml:"runtime" comment:"containerd runtime (shim) for pods"`
	// LogLevel is a logrus level name.
	LogLevel string `toml:"log-level" comment:"debug, info, warn or error"`
	// LogFormat is "logfmt" or "json".
	LogFormat string `toml:"log-format" comment:"logfmt or json"`
	// StreamAddress and StreamPort are where exec/attach/port-forward are served.
	StreamAddress string `toml:"stream-address" comment:"address of the streaming server (exec, attach, port-forward)"`
	StreamPort    int    `toml:"stream-port" comment:"port of the streaming server; 0: a free port"`
	// MetricsAddress serves Prometheus metrics over HTTP; empty is off.
	MetricsAddress string `toml:"metrics-address" comment:"Prometheus /metrics listen address (host:port, or :port for 127.0.0.1); empty: off"`
	// DebugAddress serves net/http/pprof; empty is off.
	DebugAddress string `toml:"debug-address" comment:"net/http/pprof listen address (host:port, or :port for 127.0.0.1); empty: off"`
	// IdleGOMAXPROCS is the Go runtime's GOMAXPROCS while crishim has no
	// work (internal/gomaxprocs); 0 leaves it alone.
	IdleGOMAXPROCS int `toml:"idle-gomaxprocs" comment:"GOMAXPROCS while crishim is idle (the default returns with work); 0: never lowered; a GOMAXPROCS environment variable also turns this off"`
}

// Default returns the configuration crishim runs with when nothing overrides it.
func Default() Config {
	return Config{
		Listen:              "unix:///run/crishim/crishim.sock",
		ContainerdAddress:   "/run/containerd/containerd.sock",
		ContainerdNamespace: "crishim",
		Root:                "/var/lib/crishim",
		State:               "/run/crishim",
		CNIConfDir:          "/etc/cni/net.d",
		CNIBinDir:           "/opt/cni/bin:/usr/lib/cni",
		RegistryConfigDir:   "/etc/crishim/certs.d",
		SandboxImage:        "",
		CgroupDriver:        "",
		Snapshotter:         "overlayfs",
		Runtime:             "io.containerd.runc.v2",
		LogLevel:            "info",
		LogFormat:           "logfmt",
		StreamAddress:       "127.0.0.1",
		StreamPort:          0,
		IdleGOMAXPROCS:      1,
	}
}

// Load reads path over the defaults. A missing file is not an error when
// mustExist is false, so that a fresh machine runs on the defaults.
func Load(path string, mustExist bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && !mustExist {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config %s: %w", path, err)
	}
	if err := toml.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	return cfg, cfg.Validate()
}

// Validate reports settings crishim cannot run with.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.Listen, "unix://") {
		return fmt.Errorf("listen %q: only unix:// endpoints are served", c.Listen)
	}
	if c.ContainerdNamespace == "" {
		return fmt.Errorf("containerd-namespace must not be empty")
	}
	for name, dir := range map[string]string{"root": c.Root, "state": c.State} {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("%s %q must be an absolute path", name, dir)
		}
	}
	switch c.CgroupDriver {
	case "", "cgroupfs", "systemd":
	default:
		return fmt.Errorf("cgroup-driver %q: want cgroupfs or systemd", c.CgroupDriver)
	}
	switch c.LogFormat {
	case "logfmt", "json":
	default:
		return fmt.Errorf("log-format %q: want logfmt or json", c.LogFormat)
	}
	if c.IdleGOMAXPROCS < 0 {
		return fmt.Errorf("idle-gomaxprocs %d: want 0 (off) or more", c.IdleGOMAXPROCS)
	}
	if c.StreamPort < 0 || c.StreamPort > 65535 {
		return fmt.Errorf("stream-port %d out of range", c.StreamPort)
	}
	for name, addr := range map[string]string{"metrics-address": c.MetricsAddress, "debug-address": c.DebugAddress} {
		if _, err := HTTPAddress(addr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// HTTPAddress resolves a metrics or debug listen address. An address
// without a host binds loopback only: pprof and metrics leak details of the
// node's pods and must be exposed beyond it deliberately. Empty stays empty (off).
func HTTPAddress(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("address %q: bad port %q", addr, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// SocketPath is the filesystem path of the Listen endpoint.
func (c Config) SocketPath() string { return strings.TrimPrefix(c.Listen, "unix://") }

// CNIBinDirs splits CNIBinDir into its directories.
func (c Config) CNIBinDirs() []string {
	var dirs []string
	for _, d := range strings.Split(c.CNIBinDir, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// EffectiveCgroupDriver resolves an empty CgroupDriver: systemd manages
// cgroups only where it is PID 1.
func (c Config) EffectiveCgroupDriver() string {
	if c.CgroupDriver != "" {
		return c.CgroupDriver
	}
	comm, err := os.ReadFile("/proc/1/comm")
	if err == nil && strings.TrimSpace(string(comm)) == "systemd" {
		return "systemd"
	}
	return "cgroupfs"
}

// TOML renders the configuration as a commented TOML document.
func (c Config) TOML() (string, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf).Order(toml.OrderPreserve)
	if err := enc.Encode(c); err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	return buf.String(), nil
}
