package media

import (
	"image"
	"image/color"
	"image/draw"
	"strings"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	// watermarkBox is black at 50% opacity: dark enough for white text to read
	// on any photo, light enough to leave the receipt's bottom line legible.
	watermarkBox  = image.NewUniform(color.NRGBA{A: 128})
	watermarkText = image.NewUniform(color.NRGBA{R: 255, G: 255, B: 255, A: 230})
)

// drawWatermark writes "tenant  date" on a translucent band along the bottom of img.
// The 7×13 bitmap face is scaled by a whole factor (nearest neighbour, so glyphs
// stay crisp) that grows with the image's longer side: 1× on a thumbnail, 2× on
// a medium. Text too wide for the image is cut (see fitText).
func drawWatermark(img *image.RGBA, tenant, date string) {
	face := basicfont.Face7x13
	b := img.Bounds()
	scale := max(1, max(b.Dx(), b.Dy())/512)
	pad := 3
	lineH := face.Height + 2*pad // height of the band before scaling

	text := fitText(face, tenant, date, b.Dx()/scale-2*pad)
	if text == "" {
		return
	}
	// Render at 1× into an alpha mask, then scale the mask.
	tw := font.MeasureString(face, text).Ceil()
	mask := image.NewAlpha(image.Rect(0, 0, tw+2*pad, lineH))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: face,
		Dot: fixed.P(pad, pad+face.Ascent)}
	d.DrawString(text)

	band := image.Rect(b.Min.X, b.Max.Y-lineH*scale, b.Max.X, b.Max.Y)
	draw.Draw(img, band, watermarkBox, image.Point{}, draw.Over)

	sm := mask
	if scale > 1 {
		sm = image.NewAlpha(image.Rect(0, 0, mask.Rect.Dx()*scale, mask.Rect.Dy()*scale))
		xdraw.NearestNeighbor.Scale(sm, sm.Rect, mask, mask.Rect, xdraw.Src, nil)
	}
	at := image.Rect(band.Min.X, band.Min.Y, band.Min.X+sm.Rect.Dx(), band.Max.Y)
	draw.DrawMask(img, at, watermarkText, image.Point{}, sm, image.Point{}, draw.Over)
}

// fitText returns the watermark line for tenant and date that is at most width
// pixels wide in face: both if they fit, else the tenant cut short with "..."
// before the date (the date is what tells receipts apart), else as much of the
// date as fits; "" if nothing does.
func fitText(face font.Face, tenant, date string, width int) string {
	join := func(t string) string {
		switch {
		case t == "":
			return date
		case date == "":
			return t
		}
		return t + "  " + date
	}
	fits := func(s string) bool { return font.MeasureString(face, s).Ceil() <= width }
	if s := join(tenant); fits(s) {
		return s
	}
	r := []rune(tenant)
	for n := len(r) - 1; n > 0; n-- {
		if s := join(strings.TrimRight(string(r[:n]), " ") + "..."); fits(s) {
			return s
		}
	}
	for r := []rune(join("")); len(r) > 0; r = r[:len(r)-1] {
		if fits(string(r)) {
			return string(r)
		}
	}
	return ""
}
