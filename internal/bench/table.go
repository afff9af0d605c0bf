package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Row is one line of the ratio table; cells are already formatted.
type Row struct {
	Measure string
	A, B    string
	Ratio   string
}

// TargetResult is one of the targets with what was measured.
type TargetResult struct {
	Name     string
	Want     string
	Measured string
	Met      bool
}

// Table is the benchmark's output: ratio rows, targets and notes.
type Table struct {
	Title   string
	NameA   string
	NameB   string
	Rows    []Row
	Targets []TargetResult
	Notes   []string
}

// ms formats a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratioString(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

// LatencyRow compares two distributions: p50 / p90 / p99 in milliseconds
// and the B/A ratio of each.
func LatencyRow(measure string, a, b Summary) Row {
	cell := func(s Summary) string {
		if s.N == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s / %s", ms(s.P50), ms(s.P90), ms(s.P99))
	}
	r := func(x, y time.Duration) string { return ratioString(Ratio(float64(x), float64(y))) }
	ratio := "–"
	if a.N > 0 && b.N > 0 {
		ratio = fmt.Sprintf("%s / %s / %s", r(a.P50, b.P50), r(a.P90, b.P90), r(a.P99, b.P99))
	}
	return Row{Measure: measure + " (ms, p50/p90/p99)", A: cell(a), B: cell(b), Ratio: ratio}
}

// ValueRow compares two scalars formatted with format (e.g. "%.1f").
func ValueRow(measure, format string, a, b float64) Row {
	return Row{Measure: measure, A: fmt.Sprintf(format, a), B: fmt.Sprintf(format, b), Ratio: ratioString(Ratio(a, b))}
}

// TextRow is a row whose cells do not compare as numbers.
func TextRow(measure, a, b string) Row {
	return Row{Measure: measure, A: a, B: b, Ratio: "–"}
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Markdown renders the table, the targets and the notes as Markdown, the
// form both the terminal and the README show.
func (t Table) Markdown() string {
	var b strings.Builder
	if t.Title != "" {
		fmt.Fprintf(&b, "%s\n\n", t.Title)
	}
	fmt.Fprintf(&b, "| measure | A: %s | B: %s | B/A |\n", escapeCell(t.NameA), escapeCell(t.NameB))
	b.WriteString("|---|---:|---:|---:|\n")
	for _, r := range t.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", escapeCell(r.Measure), escapeCell(r.A), escapeCell(r.B), escapeCell(r.Ratio))
	}
	if len(t.Targets) > 0 {
		b.WriteString("\n| target | wanted | measured | |\n|---|---|---|---|\n")
		for _, tr := range t.Targets {
			verdict := "unmet"
			if tr.Met {
				verdict = "met"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", escapeCell(tr.Name), escapeCell(tr.Want), escapeCell(tr.Measured), verdict)
		}
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}
