package console

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast"
)

// overviewPage is the overview: live charts of the last Window, from the
// ring, drawn by static/console.js from /console/api/series.
func (c *Console) overviewPage() *page {
	return &page{Path: "/console/", Title: "Overview", Template: "overview.html",
		Data: func(*http.Request) (any, error) {
			return map[string]any{"Charts": charts, "Window": strings.TrimSuffix(strings.TrimSuffix(c.cfg.Window.String(), "0s"), "0m"),
				"Interval": c.cfg.Interval.Milliseconds()}, nil
		}}
}

// seriesJSON is the ring's window as /console/api/series sends it.
type seriesJSON struct {
	Interval int64         `json:"interval_ms"`
	Window   int64         `json:"window_ms"`
	Times    []int64       `json:"t"`
	Charts   []chartSeries `json:"charts"`
}

type chartSeries struct {
	ID     string       `json:"id"`
	Title  string       `json:"title"`
	Unit   string       `json:"unit"`
	Series []lineSeries `json:"series"`
}

type lineSeries struct {
	Name   string     `json:"name"`
	Values []nullable `json:"values"`
}

// nullable is a float that encodes NaN (unknown) as null.
type nullable float64

func (n nullable) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(float64(n)*1000)/1000, 'f', -1, 64), nil
}

// handleSeries sends the samples after ?since= (Unix milliseconds; all of
// them without it), chart by chart.
func (c *Console) handleSeries(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseInt(s, 10, 64); err != nil || since < 0 {
			c.fail(w, r, holdfast.Errorf(holdfast.EINVALID, "since must be Unix milliseconds"))
			return
		}
	}
	win := c.ring.Since(since)
	out := seriesJSON{Interval: c.cfg.Interval.Milliseconds(), Window: c.cfg.Window.Milliseconds(), Times: win.Times}
	for _, ch := range charts {
		cs := chartSeries{ID: ch.ID, Title: ch.Title, Unit: ch.Unit, Series: []lineSeries{}}
		for _, name := range win.Series {
			line, ok := strings.CutPrefix(name, ch.ID+"/")
			if !ok {
				continue
			}
			vals := make([]nullable, len(win.Values[name]))
			for i, v := range win.Values[name] {
				vals[i] = nullable(v)
			}
			cs.Series = append(cs.Series, lineSeries{Name: line, Values: vals})
		}
		out.Charts = append(out.Charts, cs)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}
