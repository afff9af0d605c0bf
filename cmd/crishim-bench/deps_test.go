package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The binaries must not link the test harness: integration/testenv is test
// code (it starts daemons, builds binaries, knows the tests' namespaces), and
// what the benchmark shares with it lives in internal/stack.
func TestBinariesDoNotImportTestHarness(t *testing.T) {
	for _, pkg := range []string{"github.com/crishim/crishim/cmd/crishim-bench", "github.com/crishim/crishim/cmd/crishim"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/crishim/crishim/integration") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
