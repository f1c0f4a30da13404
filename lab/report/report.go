package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is what a scenario measured, ready for report.md, chart.svg and
// data.json.
type Report struct {
	Claim      string     // the seed's claim, quoted briefly
	Measured   string     // what was measured here, in a paragraph
	Columns    []string   // the naive-vs-Holdfast table
	Rows       [][]string //
	Findings   []string   // one line each: the ratios and invariants that matter
	Chart      *Chart     // nil: no chart
	Data       any        // the raw data, written as JSON
	PostgreSQL string     // the server version, if the scenario used one
}

// Heading names what a report is of: the scenario, where in the seed it
// comes from, the scale it ran at and how long it took.
type Heading struct {
	Name, Description, Section string
	Scale                      string
	Elapsed                    time.Duration
}

// Write writes dir/report.md, dir/chart.svg (if the report has a chart)
// and dir/data.json, creating dir; it returns the first error of those
// writes.
func Write(dir string, h Heading, r *Report, m Machine) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if m.PostgreSQL == "" {
		m.PostgreSQL = r.PostgreSQL
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), markdown(h, r, m), 0o644); err != nil {
		return err
	}
	if r.Chart != nil {
		var svg bytes.Buffer
		if err := r.Chart.WriteSVG(&svg); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "chart.svg"), svg.Bytes(), 0o644); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(map[string]any{
		"scenario": h.Name, "scale": h.Scale, "elapsed_ms": h.Elapsed.Milliseconds(),
		"machine": m, "table": map[string]any{"columns": r.Columns, "rows": r.Rows},
		"findings": r.Findings, "data": r.Data,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "data.json"), append(data, '\n'), 0o644)
}

// markdown renders report.md: the seed's claim quoted, what was measured,
// the table, the findings, the chart and the machine.
func markdown(h Heading, r *Report, m Machine) []byte {
	var md bytes.Buffer
	fmt.Fprintf(&md, "# %s — %s\n\n", h.Name, h.Description)
	fmt.Fprintf(&md, "The seed (%s):\n\n", h.Section)
	for _, line := range strings.Split(strings.TrimSpace(r.Claim), "\n") {
		fmt.Fprintf(&md, "> %s\n", line)
	}
	fmt.Fprintf(&md, "\n## Measured here\n\n%s\n\n", strings.TrimSpace(r.Measured))
	if len(r.Columns) > 0 {
		fmt.Fprintf(&md, "| %s |\n|", strings.Join(r.Columns, " | "))
		for range r.Columns {
			md.WriteString(" --- |")
		}
		md.WriteString("\n")
		for _, row := range r.Rows {
			fmt.Fprintf(&md, "| %s |\n", strings.Join(row, " | "))
		}
		md.WriteString("\n")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&md, "- %s\n", f)
	}
	if len(r.Findings) > 0 {
		md.WriteString("\n")
	}
	if r.Chart != nil {
		md.WriteString("![chart](chart.svg)\n\n")
	}
	fmt.Fprintf(&md, "## Machine\n\n%s. Scale %s; the scenario took %v. Raw data: `data.json`.\n", m, h.Scale, h.Elapsed.Round(time.Millisecond))
	return md.Bytes()
}

// Ratio returns a / b, or 0 when b is 0: a table's "n×" column, where a
// run that measured nothing reads as 0 rather than Inf or NaN.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
