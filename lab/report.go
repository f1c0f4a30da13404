package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Machine describes where a scenario ran.
type Machine struct {
	Host       string    `json:"host"`
	Cores      int       `json:"cores"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	OS         string    `json:"os"`
	Go         string    `json:"go"`
	PostgreSQL string    `json:"postgresql,omitempty"`
	Date       time.Time `json:"date"`
}

// ThisMachine describes this process's machine now.
func ThisMachine() Machine {
	host, _ := os.Hostname()
	return Machine{Host: host, Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version(), Date: time.Now().UTC()}
}

func (m Machine) String() string {
	s := fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s, %s", m.Host, m.Cores, m.GOMAXPROCS, m.OS, m.Go)
	if m.PostgreSQL != "" {
		s += ", PostgreSQL " + m.PostgreSQL
	}
	return s + ", " + m.Date.Format("2006-01-02 15:04 MST") + "; load generator, servers and database on the same machine"
}

// WriteReport writes dir/report.md, dir/chart.svg (if the report has a
// chart) and dir/data.json, creating dir.
func WriteReport(dir string, s Scenario, scale Scale, elapsed time.Duration, r *Report, m Machine) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if m.PostgreSQL == "" {
		m.PostgreSQL = r.PostgreSQL
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "# %s — %s\n\n", s.Name, s.Description)
	fmt.Fprintf(&md, "The seed (%s):\n\n", s.Section)
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
	fmt.Fprintf(&md, "## Machine\n\n%s. Scale %s; the scenario took %v. Raw data: `data.json`.\n", m, scale, elapsed.Round(time.Millisecond))
	if err := os.WriteFile(filepath.Join(dir, "report.md"), md.Bytes(), 0o644); err != nil {
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
		"scenario": s.Name, "scale": scale.String(), "elapsed_ms": elapsed.Milliseconds(),
		"machine": m, "table": map[string]any{"columns": r.Columns, "rows": r.Rows},
		"findings": r.Findings, "data": r.Data,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "data.json"), append(data, '\n'), 0o644)
}

// ms formats a duration in milliseconds.
func msec(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }
