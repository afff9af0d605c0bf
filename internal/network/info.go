package network

import (
	gocni "github.com/containerd/go-cni"
)

// Info is the CNI state shown by a verbose runtime Status.
type Info struct {
	ConfDir  string              `json:"confDir"`
	BinDirs  []string            `json:"binDirs"`
	Builtin  bool                `json:"builtinNetwork"`
	PodCIDR  string              `json:"podCIDR,omitempty"`
	Ready    bool                `json:"ready"`
	Error    string              `json:"error,omitempty"`
	Networks *gocni.ConfigResult `json:"config,omitempty"`
}

// Info reports the loaded CNI configuration and its state.
func (m *Manager) Info() Info {
	info := Info{ConfDir: m.cfg.ConfDir, BinDirs: m.cfg.BinDirs, PodCIDR: m.PodCIDR()}
	nets, err := m.current()
	if nets != nil {
		info.Networks = nets.all.GetConfig()
	}
	if err == nil {
		err = m.Ready()
	}
	info.Ready = err == nil
	if err != nil {
		info.Error = err.Error()
	}
	m.mu.Lock()
	info.Builtin = m.builtin
	m.mu.Unlock()
	return info
}
