package bench

import "testing"

func TestReplaceSection(t *testing.T) {
	const cri = "<!-- crishim-bench cri -->\nold table\n<!-- end crishim-bench cri -->\n"
	for _, tc := range []struct {
		name, doc, section, text, want string
	}{
		{"empty file", "", "cri", "table\n", "<!-- crishim-bench cri -->\ntable\n<!-- end crishim-bench cri -->\n"},
		{
			"replaced, the text around it kept",
			"intro\n\n" + cri + "\nnotes\n", "cri", "new table",
			"intro\n\n<!-- crishim-bench cri -->\nnew table\n<!-- end crishim-bench cri -->\n\nnotes\n",
		},
		{
			"another section appended after the first",
			cri, "scale", "scale table\n\n",
			cri + "\n<!-- crishim-bench scale -->\nscale table\n<!-- end crishim-bench scale -->\n",
		},
		{
			"the second of two replaced",
			cri + "\n<!-- crishim-bench scale -->\nx\n<!-- end crishim-bench scale -->\ntail\n", "scale", "y",
			cri + "\n<!-- crishim-bench scale -->\ny\n<!-- end crishim-bench scale -->\ntail\n",
		},
	} {
		got, err := ReplaceSection(tc.doc, tc.section, tc.text)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
	if _, err := ReplaceSection("<!-- crishim-bench cri -->\nno end\n", "cri", "x"); err == nil {
		t.Error("a section without its end marker was replaced; want an error")
	}
}
