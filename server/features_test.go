package server

import "testing"

func TestRuncFeatures(t *testing.T) {
	out := []byte(`{"ociVersionMin":"1.0.0","mountOptions":["bind","ro","rro","rw"],"annotations":{"org.opencontainers.runc.version":"1.1.5+ds1"}}`)
	rro, v := runcFeatures(out)
	if !rro || v != "1.1.5+ds1" {
		t.Errorf("rro %v version %q", rro, v)
	}
	if rro, _ := runcFeatures([]byte(`{"mountOptions":["bind","ro"]}`)); rro {
		t.Error("rro found in a list without it")
	}
	if rro, _ := runcFeatures([]byte(`not json`)); rro {
		t.Error("rro found in garbage")
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v595", true},
		{"5.12.0", true},
		{"5.11.22-generic", false},
		{"5.15", true},
		{"4.19.0-18-amd64", false},
		{"", false},
		{"x.y", false},
		{"5.12rc1", true},
	} {
		if got := kernelAtLeast(tc.release, 5, 12); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 12) = %v, want %v", tc.release, got, tc.want)
		}
	}
}
