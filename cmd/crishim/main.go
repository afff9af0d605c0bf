// Command crishim is a Kubernetes CRI runtime service that runs pods on containerd.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/crishim/crishim/internal/config"
	"github.com/crishim/crishim/internal/version"
	"github.com/crishim/crishim/server"
)

func main() {
	app := &cli.App{
		Name:  "crishim",
		Usage: "Kubernetes CRI runtime service on containerd",
		Commands: []*cli.Command{
			serveCommand(),
			checkCommand(),
			{
				Name:  "version",
				Usage: "print crishim's version",
				Action: func(c *cli.Context) error {
					fmt.Printf("crishim %s (CRI %s)\n", version.Version, version.CRIAPIVersion)
					return nil
				},
			},
			{
				Name:  "config",
				Usage: "configuration helpers",
				Subcommands: []*cli.Command{{
					Name:  "default",
					Usage: "print the default configuration as TOML",
					Action: func(c *cli.Context) error {
						out, err := config.Default().TOML()
						if err != nil {
							return err
						}
						fmt.Print(out)
						return nil
					},
				}},
			},
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "crishim:", err)
		os.Exit(1)
	}
}

// serveFlags mirrors the config file: every key is also a flag, and a flag
// given on the command line wins over the file.
func serveFlags() []cli.Flag {
	d := config.Default()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: config.DefaultPath, Usage: "TOML configuration file"},
		&cli.StringFlag{Name: "listen", Value: d.Listen, Usage: "CRI endpoint (unix://path)"},
		&cli.StringFlag{Name: "containerd-address", Value: d.ContainerdAddress, Usage: "containerd socket"},
		&cli.StringFlag{Name: "containerd-namespace", Value: d.ContainerdNamespace, Usage: "containerd namespace"},
		&cli.StringFlag{Name: "root", Value: d.Root, Usage: "persistent state directory"},
		&cli.StringFlag{Name: "state", Value: d.State, Usage: "volatile state directory"},
		&cli.StringFlag{Name: "cni-conf-dir", Value: d.CNIConfDir, Usage: "CNI configuration directory"},
		&cli.StringFlag{Name: "cni-bin-dir", Value: d.CNIBinDir, Usage: "colon-separated CNI plugin directories"},
		&cli.StringFlag{Name: "registry-config-dir", Value: d.RegistryConfigDir, Usage: "registry hosts.toml directory"},
		&cli.StringFlag{Name: "sandbox-image", Value: d.SandboxImage, Usage: "pause image (empty: embedded)"},
		&cli.StringFlag{Name: "cgroup-driver", Value: d.CgroupDriver, Usage: "cgroupfs or systemd (empty: detect)"},
		&cli.StringFlag{Name: "snapshotter", Value: d.Snapshotter, Usage: "containerd snapshotter"},
		&cli.StringFlag{Name: "runtime", Value: d.Runtime, Usage: "containerd runtime shim"},
		&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: d.LogFormat, Usage: "logfmt or json"},
		&cli.StringFlag{Name: "stream-address", Value: d.StreamAddress, Usage: "streaming server address"},
		&cli.IntFlag{Name: "stream-port", Value: d.StreamPort, Usage: "streaming server port (0: free port)"},
		&cli.StringFlag{Name: "metrics-address", Value: d.MetricsAddress, Usage: "Prometheus /metrics address (:port binds 127.0.0.1; empty: off)"},
		&cli.StringFlag{Name: "debug-address", Value: d.DebugAddress, Usage: "net/http/pprof address (:port binds 127.0.0.1; empty: off)"},
		&cli.IntFlag{Name: "idle-gomaxprocs", Value: d.IdleGOMAXPROCS, Usage: "GOMAXPROCS while idle (0: never lowered)"},
	}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the CRI on a unix socket",
		Flags: serveFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			if err := setupLogging(cfg.LogLevel, cfg.LogFormat); err != nil {
				return err
			}
			tuneMemory(cfg.DebugAddress != "")
			// Taken first: it clears LISTEN_FDS so that no child inherits it.
			activated, err := server.ActivatedListener()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			srv, err := server.New(ctx, cfg)
			if err != nil {
				if activated != nil {
					activated.Close()
				}
				return err
			}
			defer srv.Close()
			if activated != nil {
				// systemd owns the socket (crishim.socket): serve it as is.
				logrus.WithField("address", activated.Addr().String()).Info("using the socket passed by systemd")
				return srv.ServeListener(ctx, activated)
			}
			return srv.Serve(ctx)
		},
	}
}

// loadConfig reads the config file (required only when named explicitly)
// and applies the flags that were set on the command line.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg, err := config.Load(c.String("config"), c.IsSet("config"))
	if err != nil {
		return cfg, err
	}
	strs := map[string]*string{
		"listen":               &cfg.Listen,
		"containerd-address":   &cfg.ContainerdAddress,
		"containerd-namespace": &cfg.ContainerdNamespace,
		"root":                 &cfg.Root,
		"state":                &cfg.State,
		"cni-conf-dir":         &cfg.CNIConfDir,
		"cni-bin-dir":          &cfg.CNIBinDir,
		"registry-config-dir":  &cfg.RegistryConfigDir,
		"sandbox-image":        &cfg.SandboxImage,
		"cgroup-driver":        &cfg.CgroupDriver,
		"snapshotter":          &cfg.Snapshotter,
		"runtime":              &cfg.Runtime,
		"log-level":            &cfg.LogLevel,
		"log-format":           &cfg.LogFormat,
		"stream-address":       &cfg.StreamAddress,
		"metrics-address":      &cfg.MetricsAddress,
		"debug-address":        &cfg.DebugAddress,
	}
	for name, field := range strs {
		if c.IsSet(name) {
			*field = c.String(name)
		}
	}
	if c.IsSet("stream-port") {
		cfg.StreamPort = c.Int("stream-port")
	}
	if c.IsSet("idle-gomaxprocs") {
		cfg.IdleGOMAXPROCS = c.Int("idle-gomaxprocs")
	}
	return cfg, cfg.Validate()
}

func setupLogging(level, format string) error {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	logrus.SetLevel(lvl)
	logrus.SetOutput(os.Stderr)
	switch format {
	case "logfmt":
		logrus.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("log-format %q: want logfmt or json", format)
	}
	return nil
}

// defaultGCPercent is crishim's GOGC unless the environment sets one. A
// node agent's live heap is small (about 10 MiB at 100 pods) and its CPU
// use low, so a heap that may grow only half over the live data before
// a collection costs little CPU and keeps its memory flat.
const defaultGCPercent = 50

// tuneMemory applies defaultGCPercent and, when no pprof endpoint can
// read them, turns off heap profile samples, whose bucket table is over
// a MiB.
func tuneMemory(profiling bool) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if !profiling {
		runtime.MemProfileRate = 0
	}
}
