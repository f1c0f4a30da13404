package media

import (
	"image"
	"image/color"
	"testing"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font/basicfont"
)

func TestFitText(t *testing.T) {
	t.Parallel()
	face := basicfont.Face7x13 // 7 pixels a glyph
	for _, tt := range []struct {
		tenant, date string
		width        int
		want         string
	}{
		{"Acme", "2026-11-28", 1000, "Acme  2026-11-28"},
		{"Acme", "", 1000, "Acme"},
		{"", "2026-11-28", 1000, "2026-11-28"},
		{"Acme Holdings", "2026-11-28", 7 * 20, "Acme...  2026-11-28"},
		{"Acme Holdings", "2026-11-28", 7 * 12, "2026-11-28"},
		{"Acme Holdings", "2026-11-28", 7 * 4, "2026"},
		{"Acme", "2026-11-28", 3, ""},
	} {
		if got := fitText(face, tt.tenant, tt.date, tt.width); got != tt.want {
			t.Errorf("fitText(%q, %q, %d) = %q, want %q", tt.tenant, tt.date, tt.width, got, tt.want)
		}
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ w, h, box, ww, wh int }{
		{2000, 1500, 1024, 1024, 768},
		{1500, 2000, 1024, 768, 1024},
		{1024, 1024, 1024, 1024, 1024},
		{1025, 1, 1024, 1024, 1},
		{1, 100000, 256, 1, 256},
		{300, 200, 1024, 300, 200},
	} {
		if w, h := fit(tt.w, tt.h, tt.box); w != tt.ww || h != tt.wh {
			t.Errorf("fit(%d, %d, %d) = %d×%d, want %d×%d", tt.w, tt.h, tt.box, w, h, tt.ww, tt.wh)
		}
	}
}

// BenchmarkResize compares the candidate filters on the medium's resize of a
// decoded 2000×1500 JPEG; the package uses CatmullRom (see resize).
func BenchmarkResize(b *testing.B) {
	src, err := decode(JPEG, Generate(2000, 1500, 1))
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []struct {
		name string
		s    xdraw.Scaler
	}{{"ApproxBiLinear", xdraw.ApproxBiLinear}, {"BiLinear", xdraw.BiLinear}, {"CatmullRom", xdraw.CatmullRom}} {
		b.Run(k.name, func(b *testing.B) {
			dst := image.NewRGBA(image.Rect(0, 0, 1024, 768))
			for b.Loop() {
				k.s.Scale(dst, dst.Rect, src, src.Bounds(), xdraw.Src, nil)
			}
		})
	}
}

func TestShrink(t *testing.T) {
	t.Parallel()
	src := image.NewNRGBA(image.Rect(10, 20, 10+7, 20+5)) // 7×5: partial blocks dropped
	for i := range src.Pix {
		src.Pix[i] = 255
	}
	src.SetNRGBA(10, 20, color.NRGBA{0, 0, 0, 255})
	src.SetNRGBA(12, 20, color.NRGBA{0, 0, 0, 0})
	got := shrink(src, 2)
	if got.Rect != image.Rect(0, 0, 3, 2) {
		t.Fatalf("bounds %v, want 3×2", got.Rect)
	}
	for _, tt := range []struct {
		x, y int
		want color.RGBA
	}{
		{0, 0, color.RGBA{191, 191, 191, 255}}, // one black pixel in four
		{1, 0, color.RGBA{191, 191, 191, 191}}, // one transparent pixel in four, premultiplied
		{2, 1, color.RGBA{255, 255, 255, 255}},
	} {
		if c := got.RGBAAt(tt.x, tt.y); c != tt.want {
			t.Errorf("(%d,%d) = %v, want %v", tt.x, tt.y, c, tt.want)
		}
	}
}

// BenchmarkResizeLarge resizes a 40-megapixel photo to the medium.
func BenchmarkResizeLarge(b *testing.B) {
	src, err := decode(JPEG, Generate(7300, 5470, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resize(src, MediumSize)
	}
}
