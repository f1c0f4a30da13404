package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Chart is a bar chart (Bars) or a line chart (Series), drawn by WriteSVG
// as a self-contained SVG.
type Chart struct {
	Title  string
	XLabel string // line charts; bar charts label each bar
	YLabel string
	Bars   []Bar
	Series []Series
	// Markers are vertical lines of a line chart at an x, labelled.
	Markers []Marker
}

// Bar is one bar; bars of the same Group share a colour and a legend entry.
type Bar struct {
	Label string
	Value float64
	Group string // e.g. "naive", "Holdfast"
	Note  string // printed above the bar instead of the value, if set
}

// Series is one line of a line chart.
type Series struct {
	Name   string
	Points []Point
}

// Point is one (x, y) of a series.
type Point struct{ X, Y float64 }

// Marker is a labelled vertical line.
type Marker struct {
	X     float64
	Label string
}

// palette: colour-blind-safe (Okabe–Ito), naive first.
var palette = []string{"#D55E00", "#0072B2", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000"}

const (
	chartW, chartH                       = 880, 480
	padLeft, padRight, padTop, padBottom = 80, 30, 50, 80
)

// WriteSVG draws the chart.
func (c *Chart) WriteSVG(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", padLeft, esc(c.Title))
	if len(c.Bars) > 0 {
		c.bars(&b)
	} else {
		c.lines(&b)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

// plot area
func area() (x0, y0, x1, y1 float64) {
	return padLeft, padTop, chartW - padRight, chartH - padBottom
}

// niceAxis returns a round top ≥ v and a round step that divides it into
// about five ticks.
func niceAxis(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * p
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	return math.Ceil(v/step-1e-9) * step, step
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1e6:
		return strconv.FormatFloat(math.Round(v/1e5)/10, 'f', -1, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(math.Round(v/1e2)/10, 'f', -1, 64) + "k"
	case a >= 10:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// yAxis draws horizontal grid lines and labels from 0 to top; returns the
// mapping from value to y.
func (c *Chart) yAxis(b *strings.Builder, v float64) func(float64) float64 {
	x0, y0, x1, y1 := area()
	top, step := niceAxis(v)
	ty := func(v float64) float64 { return y1 - (v/top)*(y1-y0) }
	for v := 0.0; v <= top+step/2; v += step {
		y := ty(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x0, y, x1, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", x0-6, y+4, fmtNum(v))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x0, y0, x0, y1)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x0, y1, x1, y1)
	fmt.Fprintf(b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle" fill="#222">%s</text>`+"\n", (y0+y1)/2, esc(c.YLabel))
	return ty
}

// lineOffset is where a line chart's colours start in the palette: a lone
// series is not "naive", so it does not take the first colour.
func lineOffset(c *Chart) int {
	if len(c.Series) == 1 {
		return 1
	}
	return 0
}

// legend draws one entry per name along the top right, coloured from the
// palette's offset on.
func legend(b *strings.Builder, names []string, offset int) {
	x := float64(chartW - padRight)
	for i := len(names) - 1; i >= 0; i-- {
		w := float64(7*len(names[i]) + 24)
		x -= w
		fmt.Fprintf(b, `<rect x="%.1f" y="32" width="12" height="12" fill="%s"/>`, x, palette[(i+offset)%len(palette)])
		fmt.Fprintf(b, `<text x="%.1f" y="42" fill="#222">%s</text>`+"\n", x+16, esc(names[i]))
	}
}

func (c *Chart) bars(b *strings.Builder) {
	var groups []string
	top := 0.0
	for _, bar := range c.Bars {
		if !slices.Contains(groups, bar.Group) {
			groups = append(groups, bar.Group)
		}
		top = max(top, bar.Value)
	}
	ty := c.yAxis(b, top*1.08)
	x0, _, x1, y1 := area()
	slot := (x1 - x0) / float64(len(c.Bars))
	bw := math.Min(slot*0.6, 90)
	for i, bar := range c.Bars {
		cx := x0 + slot*(float64(i)+0.5)
		y := ty(bar.Value)
		color := palette[slices.Index(groups, bar.Group)%len(palette)]
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", cx-bw/2, y, bw, y1-y, color)
		note := bar.Note
		if note == "" && math.Abs(bar.Value) >= 10 {
			note = strconv.FormatFloat(math.Round(bar.Value), 'f', -1, 64)
		} else if note == "" {
			note = fmtNum(bar.Value)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#222">%s</text>`+"\n", cx, y-5, esc(note))
		// Labels wrap onto up to three lines under the axis.
		for j, line := range wrap(bar.Label, int(slot/6.5)) {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#222">%s</text>`+"\n", cx, y1+16+float64(j)*14, esc(line))
		}
	}
	if len(groups) > 1 || groups[0] != "" {
		legend(b, groups, 0)
	}
}

func (c *Chart) lines(b *strings.Builder) {
	xmin, xmax, top := math.Inf(1), math.Inf(-1), 0.0
	var names []string
	for _, s := range c.Series {
		names = append(names, s.Name)
		for _, p := range s.Points {
			xmin, xmax, top = math.Min(xmin, p.X), math.Max(xmax, p.X), math.Max(top, p.Y)
		}
	}
	if math.IsInf(xmin, 0) || xmax == xmin {
		xmin, xmax = 0, 1
	}
	xmin = math.Min(xmin, 0)
	xmax, xstep := niceAxis(xmax - xmin)
	xmax += xmin
	ty := c.yAxis(b, top*1.05)
	x0, y0, x1, y1 := area()
	tx := func(v float64) float64 { return x0 + (v-xmin)/(xmax-xmin)*(x1-x0) }
	for v := xmin; v <= xmax+xstep/2; v += xstep {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", tx(v), y1+16, fmtNum(v))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#222">%s</text>`+"\n", (x0+x1)/2, y1+38, esc(c.XLabel))
	for i, m := range c.Markers {
		x := tx(m.X)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 3"/>`+"\n", x, y0, x, y1)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#555" font-size="10">%s</text>`+"\n", x+3, y0+12+float64(i%6)*12, esc(m.Label))
	}
	for i, s := range c.Series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", tx(p.X), ty(p.Y)))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", palette[(i+lineOffset(c))%len(palette)], strings.Join(pts, " "))
	}
	legend(b, names, lineOffset(c))
}

// wrap splits s into lines of at most width characters (at most three).
func wrap(s string, width int) []string {
	width = max(width, 6)
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	if len(lines) > 3 {
		lines = append(lines[:2], strings.Join(lines[2:], " "))
	}
	return lines
}
