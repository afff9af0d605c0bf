package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultRoundTripsThroughTOML(t *testing.T) {
	out, err := Default().TOML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, true)
	if err != nil {
		t.Fatalf("load rendered default: %v", err)
	}
	if got != Default() {
		t.Fatalf("round trip changed config:\n got %+v\nwant %+v", got, Default())
	}
	for _, key := range []string{"listen", "containerd-address", "containerd-namespace", "root", "state",
		"cni-conf-dir", "cni-bin-dir", "registry-config-dir", "sandbox-image", "cgroup-driver", "log-level"} {
		if !strings.Contains(out, "\n"+key+" = ") {
			t.Errorf("default config lacks key %q", key)
		}
	}
}

func TestLoadOverridesAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(filepath.Join(dir, "absent.toml"), false)
	if err != nil || cfg != Default() {
		t.Fatalf("missing optional file: cfg=%+v err=%v", cfg, err)
	}
	if _, err := Load(filepath.Join(dir, "absent.toml"), true); err == nil {
		t.Fatal("missing required file: want error")
	}
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte("containerd-namespace = \"other\"\nstream-port = 10010\n"), 0o600)
	cfg, err = Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ContainerdNamespace != "other" || cfg.StreamPort != 10010 || cfg.Root != Default().Root {
		t.Fatalf("override not applied: %+v", cfg)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*Config){
		"tcp listen":      func(c *Config) { c.Listen = "tcp://127.0.0.1:1" },
		"empty namespace": func(c *Config) { c.ContainerdNamespace = "" },
		"relative root":   func(c *Config) { c.Root = "var/lib" },
		"bad driver":      func(c *Config) { c.CgroupDriver = "cgroupv3" },
		"bad log format":  func(c *Config) { c.LogFormat = "xml" },
		"bad port":        func(c *Config) { c.StreamPort = 70000 },
		"negative procs":  func(c *Config) { c.IdleGOMAXPROCS = -1 },
	}
	for name, mutate := range cases {
		c := Default()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestCNIBinDirs(t *testing.T) {
	c := Config{CNIBinDir: "/opt/cni/bin::/usr/lib/cni:"}
	got := c.CNIBinDirs()
	if len(got) != 2 || got[0] != "/opt/cni/bin" || got[1] != "/usr/lib/cni" {
		t.Fatalf("CNIBinDirs = %v", got)
	}
}

func TestHTTPAddress(t *testing.T) {
	cases := map[string]string{
		"":               "",
		":9090":          "127.0.0.1:9090",
		"9090":           "127.0.0.1:9090",
		"0.0.0.0:9090":   "0.0.0.0:9090",
		"[::1]:10":       "[::1]:10",
		"localhost:8080": "localhost:8080",
	}
	for in, want := range cases {
		got, err := HTTPAddress(in)
		if err != nil || got != want {
			t.Errorf("HTTPAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"host:port", ":70000", "a:b:c"} {
		if _, err := HTTPAddress(bad); err == nil {
			t.Errorf("HTTPAddress(%q): want error", bad)
		}
	}
	cfg := Default()
	cfg.MetricsAddress = ":x"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics-address") {
		t.Errorf("Validate with bad metrics-address = %v", err)
	}
}
