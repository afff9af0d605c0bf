package preflight

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/crishim/crishim/internal/config"
	"github.com/crishim/crishim/internal/network"
)

// Machine returns the probes of the machine crishim runs on.
func Machine() Probes {
	return Probes{
		ReadFile:  os.ReadFile,
		WriteFile: func(path string, data []byte) error { return os.WriteFile(path, data, 0o644) },
		LookPath:  exec.LookPath,
		Output: func(name string, args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, name, args...).Output()
			return string(out), err
		},
		FSType: func(path string) (int64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs(path, &st); err != nil {
				return 0, err
			}
			return int64(st.Type), nil
		},
		Writable: func(path string) error {
			if err := unix.Access(path, unix.W_OK); err != nil {
				return &os.PathError{Op: "access", Path: path, Err: err}
			}
			return nil
		},
		Exists: func(path string) bool {
			_, err := os.Stat(path)
			return err == nil
		},
		Containerd: containerdInfo,
		CNI:        cniState,
	}
}

// containerdTimeout bounds the whole conversation with containerd.
const containerdTimeout = 5 * time.Second

func containerdInfo(ctx context.Context, address string) (ContainerdInfo, error) {
	var info ContainerdInfo
	if _, err := os.Stat(address); err != nil {
		return info, err
	}
	ctx, cancel := context.WithTimeout(ctx, containerdTimeout)
	defer cancel()
	client, err := containerd.New(address, containerd.WithTimeout(containerdTimeout))
	if err != nil {
		return info, err
	}
	defer client.Close()
	v, err := client.Version(ctx)
	if err != nil {
		return info, err
	}
	info.Version = v.Version
	resp, err := client.IntrospectionService().Plugins(ctx, nil)
	if err != nil {
		return info, fmt.Errorf("list plugins: %w", err)
	}
	for _, p := range resp.Plugins {
		pl := Plugin{Type: p.Type, ID: p.ID}
		if p.InitErr != nil {
			pl.InitErr = p.InitErr.Message
			if pl.InitErr == "" {
				pl.InitErr = "failed to load"
			}
		}
		info.Plugins = append(info.Plugins, pl)
	}
	return info, nil
}

// cniState loads the CNI configuration exactly as `crishim serve` would.
func cniState(cfg config.Config) CNIState {
	m, err := network.New(network.Config{
		ConfDir: cfg.CNIConfDir,
		BinDirs: cfg.CNIBinDirs(),
		// Never created: the check attaches nothing.
		NetNSDir: cfg.State + "/netns",
	})
	if err != nil {
		return CNIState{Err: err}
	}
	if err := m.Ready(); err != nil {
		// The errdefs class is for the server's gRPC mapping, noise to a reader.
		return CNIState{Err: errors.New(strings.TrimSuffix(err.Error(), ": "+errdefs.ErrFailedPrecondition.Error()))}
	}
	return CNIState{Builtin: m.UsesBuiltin()}
}
