package media

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
)

// Generate returns a w×h JPEG (quality 90) whose content is a pure function of
// seed: a gradient with a few dozen coloured blocks and dark "text" rules, so
// it compresses and resizes like a photographed receipt rather than a flat
// fill. It is meant for tests and benchmarks. It panics if w or h is not
// positive.
func Generate(w, h int, seed int64) []byte {
	if w <= 0 || h <= 0 {
		panic(fmt.Sprintf("media.Generate: bad size %d×%d", w, h))
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	base := [3]int{rng.IntN(128), rng.IntN(128), rng.IntN(128)}
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			row[4*x+0] = uint8(base[0] + 127*x/w)
			row[4*x+1] = uint8(base[1] + 127*y/h)
			row[4*x+2] = uint8(base[2] + 127*(x+y)/(w+h))
			row[4*x+3] = 0xff
		}
	}
	fill := func(r image.Rectangle, c color.RGBA) {
		r = r.Intersect(img.Rect)
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				img.SetRGBA(x, y, c)
			}
		}
	}
	for range 24 {
		x, y := rng.IntN(w), rng.IntN(h)
		fill(image.Rect(x, y, x+1+rng.IntN(max(1, w/4)), y+1+rng.IntN(max(1, h/4))),
			color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 0xff})
	}
	// Lines of "text": short dark dashes on a white strip.
	for y := h / 8; y+4 < h; y += max(6, h/24) {
		fill(image.Rect(w/10, y-2, w-w/10, y+5), color.RGBA{250, 250, 245, 0xff})
		for x := w / 10; x < w-w/10; {
			n := 2 + rng.IntN(max(1, w/40))
			fill(image.Rect(x, y, x+n, y+3), color.RGBA{20, 20, 30, 0xff})
			x += n + 1 + rng.IntN(4)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err) // unreachable: encoding to memory with a valid size
	}
	return buf.Bytes()
}
