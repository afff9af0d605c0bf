// Package network gives pods their network: a network namespace each and
// an attachment through CNI plugins (go-cni).
package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/pkg/netns"
	gocni "github.com/containerd/go-cni"
	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config is what pod networking needs from crishim's configuration.
type Config struct {
	ConfDir string
	BinDirs []string
	// NetNSDir is where pod network namespaces are bind-mounted.
	NetNSDir string
	// Observe, when set, is told the outcome and duration of every CNI
	// "setup" and "teardown" (for metrics).
	Observe func(op string, took time.Duration, err error)
}

// Manager sets up and tears down pod networks.
type Manager struct {
	cfg Config

	mu sync.Mutex
	// stamp describes the conf dir contents cni was loaded from; a
	// different stamp means the operator changed the configuration.
	stamp   string
	loaded  bool
	cni     *networks
	loadErr error
	builtin bool
	podCIDR string
}

// New loads the CNI configuration; a conf dir with no config selects the
// built-in bridge network.
func New(cfg Config) (*Manager, error) {
	if cfg.NetNSDir == "" {
		return nil, fmt.Errorf("network namespace directory must be set: %w", errdefs.ErrInvalidArgument)
	}
	m := &Manager{cfg: cfg}
	// A broken CNI config is not fatal: the node reports NetworkReady=false
	// until the operator fixes it, as the kubelet expects.
	if _, err := m.current(); err != nil {
		logrus.WithError(err).Warn("CNI configuration not usable yet")
	}
	return m, nil
}

// Result is a pod's network attachment.
type Result struct {
	IP            string
	AdditionalIPs []string
}

// NetNSDir is where CreateNetNS puts the pods' network namespaces.
func (m *Manager) NetNSDir() string { return m.cfg.NetNSDir }

// CreateNetNS makes a new persistent network namespace for pod id, with
// its loopback interface up, and returns its path.
func (m *Manager) CreateNetNS(id string) (string, error) {
	ns, err := netns.NewNetNS(m.cfg.NetNSDir)
	if err != nil {
		return "", fmt.Errorf("create network namespace for pod %s: %w", id, err)
	}
	if err := bringUpLoopback(ns.GetPath()); err != nil {
		if rerr := ns.Remove(); rerr != nil {
			logrus.WithError(rerr).WithField("pod", id).Warn("remove network namespace after failing to set lo up")
		}
		return "", fmt.Errorf("create network namespace for pod %s: %w", id, err)
	}
	return ns.GetPath(), nil
}

// RemoveNetNS unmounts and deletes a namespace made by CreateNetNS; absent is fine.
func (m *Manager) RemoveNetNS(path string) error {
	if path == "" {
		return nil
	}
	if err := netns.LoadNetNS(path).Remove(); err != nil {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}

// Setup attaches the pod in netnsPath (CNI ADD) with its port mappings and
// DNS/bandwidth capabilities. On failure nothing stays attached.
func (m *Manager) Setup(ctx context.Context, id, netnsPath string, pod *runtime.PodSandboxConfig) (_ *Result, err error) {
	defer m.observe("setup", time.Now(), &err)
	nets, err := m.current()
	if err != nil {
		return nil, fmt.Errorf("set up network for pod %s: %w", id, err)
	}
	cni := nets.forPod(pod)
	// A plugin missing half way through the chain would leave what the
	// ones before it took, and its DEL would fail as well.
	if missing := m.missingPlugins(cni); len(missing) > 0 {
		return nil, fmt.Errorf("set up network for pod %s: CNI plugins %s not found in %s: %w",
			id, strings.Join(missing, ", "), strings.Join(m.cfg.BinDirs, ":"), errdefs.ErrFailedPrecondition)
	}
	opts, err := namespaceOpts(id, pod)
	if err != nil {
		return nil, fmt.Errorf("set up network for pod %s: %w", id, err)
	}
	res, err := cni.Setup(ctx, id, netnsPath, opts...)
	if err != nil {
		// An ADD that failed halfway may hold an IP or iptables rules; DEL
		// releases them. The caller's context may be what failed, so DEL
		// gets its own.
		delCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := remove(delCtx, cni, id, netnsPath, opts); derr != nil {
			logrus.WithError(derr).WithField("pod", id).Warn("release network after failed CNI ADD")
			return nil, fmt.Errorf("CNI ADD for pod %s: %w (%w: CNI DEL: %v)", id, err, ErrStillAttached, derr)
		}
		return nil, fmt.Errorf("CNI ADD for pod %s: %w", id, err)
	}
	ip, extra := podIPs(res)
	if ip == "" {
		delCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := remove(delCtx, cni, id, netnsPath, opts); derr != nil {
			logrus.WithError(derr).WithField("pod", id).Warn("release network after CNI ADD without IP")
			return nil, fmt.Errorf("CNI ADD for pod %s returned no IP address (%w: CNI DEL: %v): %w", id, ErrStillAttached, derr, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("CNI ADD for pod %s returned no IP address: %w", id, errdefs.ErrFailedPrecondition)
	}
	return &Result{IP: ip, AdditionalIPs: extra}, nil
}

// ErrStillAttached marks a failed Setup whose own CNI DEL failed too: what
// the ADD took (an address, iptables rules) stays until a Teardown works.
var ErrStillAttached = errors.New("the pod's network is still attached")

// Teardown detaches the pod (CNI DEL); it is idempotent.
func (m *Manager) Teardown(ctx context.Context, id, netnsPath string, pod *runtime.PodSandboxConfig) (err error) {
	defer m.observe("teardown", time.Now(), &err)
	nets, err := m.current()
	if err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", id, err)
	}
	// The chain ADD ran, chosen by the pod's (unchanging) port mappings.
	cni := nets.forPod(pod)
	opts, err := namespaceOpts(id, pod)
	if err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", id, err)
	}
	if err := remove(ctx, cni, id, netnsPath, opts); err != nil {
		return fmt.Errorf("CNI DEL for pod %s: %w", id, err)
	}
	return nil
}

func (m *Manager) observe(op string, start time.Time, err *error) {
	if m.cfg.Observe != nil {
		m.cfg.Observe(op, time.Since(start), *err)
	}
}

// remove runs CNI DEL. Plugins are inconsistent about a namespace that no
// longer exists (after a reboot, or a half-done teardown), so when the
// namespace is gone and DEL fails it is retried without one, which the
// CNI spec lets every plugin treat as "release what you can".
func remove(ctx context.Context, cni gocni.CNI, id, netnsPath string, opts []gocni.NamespaceOpts) error {
	err := cni.Remove(ctx, id, netnsPath, opts...)
	if err == nil || netnsPath == "" {
		return err
	}
	if _, serr := os.Stat(netnsPath); !os.IsNotExist(serr) {
		return err
	}
	return cni.Remove(ctx, id, "", opts...)
}

// Ready reports nil when a usable CNI configuration is loaded, else why not.
func (m *Manager) Ready() error {
	nets, err := m.current()
	if err != nil {
		return err
	}
	if missing := m.missingPlugins(nets.all); len(missing) > 0 {
		return fmt.Errorf("CNI plugins %s not found in %s: %w",
			strings.Join(missing, ", "), strings.Join(m.cfg.BinDirs, ":"), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// missingPlugins lists the plugins (IPAM included) of cni's chain that
// are not in the bin dirs.
func (m *Manager) missingPlugins(cni gocni.CNI) []string {
	var missing []string
	for _, n := range cni.GetConfig().Networks {
		for _, p := range n.Config.Plugins {
			if p.Network == nil {
				continue
			}
			for _, typ := range []string{p.Network.Type, p.Network.IPAM.Type} {
				if typ != "" && !m.pluginExists(typ) {
					missing = append(missing, typ)
				}
			}
		}
	}
	return dedupe(missing)
}

// UpdatePodCIDR records the node's pod CIDR (UpdateRuntimeConfig).
func (m *Manager) UpdatePodCIDR(cidr string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.podCIDR = cidr
	return nil
}

// PodCIDR is the CIDR last given to UpdatePodCIDR.
func (m *Manager) PodCIDR() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.podCIDR
}

// UsesBuiltin reports whether the built-in bridge network is in use
// because the conf dir holds no configuration.
func (m *Manager) UsesBuiltin() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.builtin && m.loadErr == nil
}

func (m *Manager) pluginExists(typ string) bool {
	for _, dir := range m.cfg.BinDirs {
		fi, err := os.Stat(filepath.Join(dir, typ))
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

// current returns the CNI instance for the conf dir as it is now, loading
// it again when the directory changed since the last call.
func (m *Manager) current() (*networks, error) {
	files, stamp, err := confFiles(m.cfg.ConfDir)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loaded && stamp == m.stamp {
		return m.cni, m.loadErr
	}
	m.loaded, m.stamp = true, stamp
	m.builtin = len(files) == 0
	m.cni, m.loadErr = load(m.cfg, m.builtin)
	if m.loadErr != nil {
		logrus.WithError(m.loadErr).WithField("dir", m.cfg.ConfDir).Warn("load CNI configuration")
	} else {
		logrus.WithFields(logrus.Fields{"dir": m.cfg.ConfDir, "builtin": m.builtin}).Info("loaded CNI configuration")
	}
	return m.cni, m.loadErr
}

// networks is a loaded pod network: the chain as configured and, when the
// chain has portmap plugins, the same chain without them.
type networks struct {
	all gocni.CNI
	// noHostPorts serves pods that publish no host port. portmap does
	// nothing for them but still costs a plugin exec on each ADD and DEL.
	noHostPorts gocni.CNI
}

// forPod is the chain to run for pod: without portmap when it maps no
// host ports. ADD and DEL choose alike, as port mappings never change.
func (n *networks) forPod(pod *runtime.PodSandboxConfig) gocni.CNI {
	if n.noHostPorts != nil && len(portMappings(pod.GetPortMappings())) == 0 {
		return n.noHostPorts
	}
	return n.all
}

func load(cfg Config, builtin bool) (*networks, error) {
	// The pod network is the first config in the directory (go-cni's
	// default); pods' lo is set up by CreateNetNS, not by a plugin.
	podNet := gocni.WithDefaultConf
	if builtin {
		podNet = gocni.WithConfListBytes([]byte(BuiltinConfList))
	}
	all, err := loadChain(cfg, podNet)
	if err != nil {
		return nil, fmt.Errorf("load CNI config from %s: %v: %w", cfg.ConfDir, err, errdefs.ErrFailedPrecondition)
	}
	nets := &networks{all: all}
	source := all.GetConfig().Networks[0].Config.Source
	trimmed, ok, err := withoutPlugin([]byte(source), "portmap")
	if err == nil && ok {
		nets.noHostPorts, err = loadChain(cfg, gocni.WithConfListBytes(trimmed))
	}
	if err != nil {
		// Not fatal: the whole chain serves every pod.
		logrus.WithError(err).Warn("CNI config: no portmap-free chain for pods without host ports")
		nets.noHostPorts = nil
	}
	return nets, nil
}

func loadChain(cfg Config, podNet gocni.Opt) (gocni.CNI, error) {
	cni, err := gocni.New(
		gocni.WithPluginDir(cfg.BinDirs),
		gocni.WithPluginConfDir(cfg.ConfDir),
		gocni.WithInterfacePrefix("eth"),
		gocni.WithMinNetworkCount(1),
	)
	if err != nil {
		return nil, fmt.Errorf("initialise CNI: %w", err)
	}
	if err := cni.Load(podNet); err != nil {
		return nil, err
	}
	return cni, nil
}

// withoutPlugin returns the conflist with the plugins of type typ left
// out, and whether there were any to leave out while others remain.
// Numbers are kept as written (json.Number), not rounded through float64.
func withoutPlugin(conflist []byte, typ string) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(conflist))
	dec.UseNumber()
	var list map[string]any
	if err := dec.Decode(&list); err != nil {
		return nil, false, fmt.Errorf("parse conflist: %w", err)
	}
	plugins, _ := list["plugins"].([]any)
	kept := make([]any, 0, len(plugins))
	for _, p := range plugins {
		if conf, ok := p.(map[string]any); ok && conf["type"] == typ {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == len(plugins) || len(kept) == 0 {
		return nil, false, nil
	}
	list["plugins"] = kept
	out, err := json.Marshal(list)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// confFiles lists the network configs in dir the way libcni finds them
// and summarises their names, sizes and modification times.
func confFiles(dir string) ([]string, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", nil
		}
		return nil, "", fmt.Errorf("read CNI conf dir %s: %w", dir, err)
	}
	var files []string
	var stamp strings.Builder
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		info, err := e.Info()
		if err != nil || info.IsDir() {
			continue
		}
		files = append(files, e.Name())
		fmt.Fprintf(&stamp, "%s:%d:%d;", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	sort.Strings(files)
	return files, stamp.String(), nil
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
