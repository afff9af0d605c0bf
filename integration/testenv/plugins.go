//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crishim/crishim/internal/stack"
)

// PluginDir is a CNI plugin directory a test controls: links to every
// plugin in stack.CNIBinDir, except that one plugin is a wrapper logging its
// calls and failing on request, and any plugin can be made to vanish.
type PluginDir struct {
	Dir     string
	wrapped string
}

// WrapPlugins makes a PluginDir in dir whose plugin named wrapped goes
// through the wrapper.
func WrapPlugins(dir, wrapped string) (*PluginDir, error) {
	if err := os.MkdirAll(filepath.Join(dir, "control"), 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(stack.CNIBinDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Name() == wrapped {
			continue
		}
		if err := os.Symlink(filepath.Join(stack.CNIBinDir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
	}
	p := &PluginDir{Dir: dir, wrapped: wrapped}
	// A failing ADD does the real work first, as a plugin that fails half
	// way does (the address is allocated, the veth made); a failing DEL
	// fails before releasing anything.
	script := fmt.Sprintf(`#!/bin/sh
real=%[1]s
ctl=%[2]s
case "$CNI_COMMAND" in ADD|DEL|CHECK) echo "$CNI_COMMAND $CNI_CONTAINERID" >>"$ctl/calls";; esac
if [ -e "$ctl/fail-$CNI_COMMAND" ]; then
	if [ "$CNI_COMMAND" = ADD ]; then "$real" >/dev/null; fi
	echo '{"cniVersion":"1.0.0","code":11,"msg":"injected %[3]s failure","details":"'"$CNI_COMMAND"' refused by the test"}'
	exit 1
fi
exec "$real"
`, filepath.Join(stack.CNIBinDir, wrapped), filepath.Join(dir, "control"), wrapped)
	if err := os.WriteFile(filepath.Join(dir, wrapped), []byte(script), 0o755); err != nil {
		return nil, err
	}
	return p, nil
}

// Fail makes the wrapped plugin fail every cmd (ADD, DEL) until Heal.
func (p *PluginDir) Fail(cmd string) error {
	return os.WriteFile(filepath.Join(p.Dir, "control", "fail-"+cmd), nil, 0o644)
}

// Hide removes the wrapped plugin from the directory until Heal.
func (p *PluginDir) Hide() error {
	return os.Rename(filepath.Join(p.Dir, p.wrapped), filepath.Join(p.Dir, "control", p.wrapped+".hidden"))
}

// Heal undoes Fail and Hide.
func (p *PluginDir) Heal() error {
	var errs []error
	for _, cmd := range []string{"ADD", "DEL", "CHECK"} {
		if err := os.Remove(filepath.Join(p.Dir, "control", "fail-"+cmd)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	hidden := filepath.Join(p.Dir, "control", p.wrapped+".hidden")
	if _, err := os.Stat(hidden); err == nil {
		errs = append(errs, os.Rename(hidden, filepath.Join(p.Dir, p.wrapped)))
	}
	return errors.Join(errs...)
}

// Calls lists the ADD, DEL and CHECK calls the wrapped plugin received,
// as "ADD <container id>", oldest first.
func (p *PluginDir) Calls() ([]string, error) {
	data, err := os.ReadFile(filepath.Join(p.Dir, "control", "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n"), nil
}
