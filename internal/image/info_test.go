package image

import (
	"fmt"
	"testing"
)

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in       string
		uid      string // "" when the user is not numeric
		username string
	}{
		{"", "", ""},
		{"0", "0", ""},
		{"1000", "1000", ""},
		{"1000:1000", "1000", ""},
		{"1000:staff", "1000", ""},
		{"nobody", "", "nobody"},
		{"www-data:www-data", "", "www-data"},
		{"nobody:100", "", "nobody"},
	} {
		uid, name := parseUser(tc.in)
		got := ""
		if uid != nil {
			got = fmt.Sprint(*uid)
		}
		if got != tc.uid || name != tc.username {
			t.Errorf("parseUser(%q) = (uid %q, %q), want (uid %q, %q)", tc.in, got, name, tc.uid, tc.username)
		}
	}
}
