//go:build linux

package stack

import (
	"reflect"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{
			in:   `CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"crishim-it-ab12\" id: \"0123\"" -m multiport --dports 8080 -j CNI-DN-1f2e`,
			want: []string{"CNI-HOSTPORT-DNAT", "-p", "tcp", "-m", "comment", "--comment", `dnat name: "crishim-it-ab12" id: "0123"`, "-m", "multiport", "--dports", "8080", "-j", "CNI-DN-1f2e"},
		},
		{in: `POSTROUTING  -j  X`, want: []string{"POSTROUTING", "-j", "X"}},
		{in: `X --comment ""`, want: []string{"X", "--comment", ""}},
	} {
		if got := splitRule(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/var/tmp/a\040b`: "/var/tmp/a b",
		`/run/x\134y`:     `/run/x\y`,
		`/plain`:          "/plain",
		`/end\04`:         `/end\04`,
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBusyboxImageIsStable(t *testing.T) {
	a, err := BusyboxImage(ImageOptions{})
	if err != nil {
		t.Skipf("no busybox here: %v", err)
	}
	b, err := BusyboxImage(ImageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Manifest.Desc.Digest != b.Manifest.Desc.Digest {
		t.Errorf("two builds differ: %s and %s", a.Manifest.Desc.Digest, b.Manifest.Desc.Digest)
	}
	c, err := BusyboxImage(ImageOptions{StopSignal: "SIGUSR1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() == a.ID() || c.Layers[0].Desc.Digest != a.Layers[0].Desc.Digest {
		t.Errorf("a config change must change the ID (%s vs %s) and keep the layer", c.ID(), a.ID())
	}
}
