package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// A results file holds several sections, each between its own pair of
// markers, so that a run rewrites only what it measured: `make bench`
// replaces the CRI rounds' table and leaves the scale round's (and any
// hand-written text around them) alone.
func sectionMarkers(name string) (begin, end string) {
	return fmt.Sprintf("<!-- crishim-bench %s -->", name), fmt.Sprintf("<!-- end crishim-bench %s -->", name)
}

// ReplaceSection returns doc with section name's text replaced by text, or
// with the section appended when doc has none yet.
func ReplaceSection(doc, name, text string) (string, error) {
	begin, end := sectionMarkers(name)
	block := begin + "\n" + strings.TrimRight(text, "\n") + "\n" + end + "\n"
	i := strings.Index(doc, begin)
	if i < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return doc + block, nil
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("section %q has no end marker %q", name, end)
	}
	rest := strings.TrimPrefix(doc[i+j+len(end):], "\n")
	return doc[:i] + block + rest, nil
}

// WriteSection replaces (or adds) section name in the file at path.
func WriteSection(path, name, text string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc, err := ReplaceSection(string(data), name, text)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
