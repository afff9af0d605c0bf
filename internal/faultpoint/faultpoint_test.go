package faultpoint

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	got, err := Parse(" a=exit, b=sleep:3s ,c=error,d=kill,e=error:2")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]action{"a": {kind: "exit"}, "b": {kind: "sleep", sleep: 3 * time.Second}, "c": {kind: "error"}, "d": {kind: "kill"}, "e": {kind: "error", times: 2}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %+v, want %+v", k, got[k], v)
		}
	}
	for _, bad := range []string{"a", "=exit", "a=explode", "a=sleep:soon", "a=sleep:-1s", "a=error:0", "a=error:x"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestHit(t *testing.T) {
	once.Do(func() {}) // keep the real environment out
	armed = map[string]action{"p.err": {kind: "error"}, "p.sleep": {kind: "sleep", sleep: time.Millisecond}, "p.twice": {kind: "error", times: 2}}
	defer func() { armed, hits = nil, nil }()
	for i := 0; i < 3; i++ {
		if err := Hit("p.twice"); (i < 2) != errors.Is(err, ErrInjected) {
			t.Errorf("hit %d of a point that fails twice returned %v", i+1, err)
		}
	}
	if err := Hit("p.err"); !errors.Is(err, ErrInjected) {
		t.Errorf("error point returned %v", err)
	}
	if err := Hit("p.sleep"); err != nil {
		t.Errorf("sleep point returned %v", err)
	}
	if err := Hit("unarmed"); err != nil {
		t.Errorf("unarmed point returned %v", err)
	}
}
