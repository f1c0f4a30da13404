package console

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/holdfast/holdfast"
)

// Bounds of the lab page: the newest reports, and the bytes read of each.
const (
	maxLabReports = 20
	maxReportSize = 256 << 10
)

// labReport is one scenario's report as `holdfast-lab lab` wrote it:
// <dir>/<scenario>/report.md and chart.svg.
type labReport struct {
	Name     string
	Modified time.Time
	Markdown string
	Chart    bool
}

// labPage shows the newest lab reports in Config.LabDir, their text and
// chart, read at most every 10 s.
func (c *Console) labPage() *page {
	reports := &cached[[]labReport]{ttl: 10 * time.Second, load: func(context.Context) ([]labReport, error) {
		return readLabReports(c.cfg.LabDir)
	}}
	return &page{Path: "/console/lab/", Title: "Lab", Template: "lab.html",
		Data: func(r *http.Request) (any, error) {
			list, err := reports.get(r.Context())
			return map[string]any{"Reports": list, "Dir": c.cfg.LabDir}, err
		},
		Gets: map[string]http.Handler{"/console/lab/{name}/chart.svg": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.serveLabChart(w, r)
		})}}
}

// serveLabChart sends a report's chart; the page shows it in an <img>,
// where an SVG runs no script, and the console's CSP forbids any anyway.
func (c *Console) serveLabChart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if c.cfg.LabDir == "" || !filepath.IsLocal(name) || filepath.Base(name) != name {
		c.fail(w, r, holdfast.Errorf(holdfast.ENOTFOUND, "no such report"))
		return
	}
	b, err := readCapped(filepath.Join(c.cfg.LabDir, name, "chart.svg"), 4<<20)
	if err != nil {
		c.fail(w, r, holdfast.Errorf(holdfast.ENOTFOUND, "no such chart"))
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(b)
}

// readLabReports reads the newest reports under dir; none when dir is ""
// or missing.
func readLabReports(dir string) ([]labReport, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []labReport
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		md := filepath.Join(dir, e.Name(), "report.md")
		st, err := os.Stat(md)
		if err != nil {
			continue
		}
		out = append(out, labReport{Name: e.Name(), Modified: st.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Modified.After(out[j].Modified) })
	out = out[:min(len(out), maxLabReports)]
	for i := range out {
		b, err := readCapped(filepath.Join(dir, out[i].Name, "report.md"), maxReportSize)
		if err != nil {
			return nil, err
		}
		out[i].Markdown = string(b)
		_, err = os.Stat(filepath.Join(dir, out[i].Name, "chart.svg"))
		out[i].Chart = err == nil
	}
	return out, nil
}

// readCapped reads at most limit bytes of a file.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
