package media_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
)

var testOpts = media.Options{Tenant: "Acme Receipts Ltd", Date: time.Date(2026, 11, 28, 23, 30, 0, 0, time.UTC)}

// MustProcess returns the variants of src, failing the test on error.
func MustProcess(t testing.TB, src []byte, opts media.Options) media.Variants {
	t.Helper()
	vs, err := media.Process(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// MustDecode decodes a variant, checking its bytes match its declared format.
func MustDecode(t testing.TB, v media.Variant) image.Image {
	t.Helper()
	var img image.Image
	var err error
	switch v.Format {
	case media.JPEG:
		img, err = jpeg.Decode(bytes.NewReader(v.Data))
	case media.PNG:
		img, err = png.Decode(bytes.NewReader(v.Data))
	default:
		t.Fatalf("%s: format %q", v.Name, v.Format)
	}
	if err != nil {
		t.Fatalf("%s: decode %s: %v", v.Name, v.Format, err)
	}
	if b := img.Bounds(); b.Dx() != v.Width || b.Dy() != v.Height {
		t.Fatalf("%s: encoded %v, declared %d×%d", v.Name, b, v.Width, v.Height)
	}
	return img
}

func TestProcessDimensions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		src          []byte
		format       media.Format
		thumb, media [2]int
	}{
		{"jpeg 2000x1500", media.Generate(2000, 1500, 1), media.JPEG, [2]int{256, 192}, [2]int{1024, 768}},
		{"jpeg portrait 600x3000", media.Generate(600, 3000, 2), media.JPEG, [2]int{51, 256}, [2]int{205, 1024}},
		{"jpeg small never upscaled", media.Generate(300, 200, 3), media.JPEG, [2]int{256, 171}, [2]int{300, 200}},
		{"jpeg tiny", media.Generate(100, 50, 4), media.JPEG, [2]int{100, 50}, [2]int{100, 50}},
		{"jpeg sliver", media.Generate(4000, 2, 5), media.JPEG, [2]int{256, 1}, [2]int{1024, 1}},
		{"png opaque", MustPNG(t, 1100, 800, false), media.JPEG, [2]int{256, 186}, [2]int{1024, 745}},
		{"png alpha", MustPNG(t, 1100, 800, true), media.PNG, [2]int{256, 186}, [2]int{1024, 745}},
		{"webp lossy", MustTestdata(t, "blue-purple-pink.lossy.webp"), media.JPEG, [2]int{150, 100}, [2]int{150, 100}},
		{"webp alpha", MustTestdata(t, "gopher-doc.with-alpha.lossless.webp"), media.PNG, [2]int{0, 0}, [2]int{0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vs := MustProcess(t, tt.src, testOpts)
			for _, c := range []struct {
				v    media.Variant
				name string
				want [2]int
				box  int
			}{{vs.Thumbnail, media.Thumbnail, tt.thumb, media.ThumbnailSize}, {vs.Medium, media.Medium, tt.media, media.MediumSize}} {
				if c.v.Name != c.name {
					t.Errorf("name = %q, want %q", c.v.Name, c.name)
				}
				if c.v.Format != tt.format {
					t.Errorf("%s: format = %q, want %q", c.name, c.v.Format, tt.format)
				}
				MustDecode(t, c.v)
				if tt.thumb != [2]int{} && (c.v.Width != c.want[0] || c.v.Height != c.want[1]) {
					t.Errorf("%s: %d×%d, want %d×%d", c.name, c.v.Width, c.v.Height, c.want[0], c.want[1])
				}
				if c.v.Width > c.box || c.v.Height > c.box || c.v.Width > vs.Source.Width || c.v.Height > vs.Source.Height {
					t.Errorf("%s: %d×%d outside %d box or upscaled from %d×%d", c.name, c.v.Width, c.v.Height, c.box, vs.Source.Width, vs.Source.Height)
				}
			}
			if v, ok := vs.Get(media.Medium); !ok || !bytes.Equal(v.Data, vs.Medium.Data) {
				t.Error("Get(medium) does not return the medium")
			}
		})
	}
}

func TestProcessKeepsTransparency(t *testing.T) {
	t.Parallel()
	vs := MustProcess(t, MustPNG(t, 400, 300, true), testOpts)
	img := MustDecode(t, vs.Medium)
	// The left half of the source is half transparent, above the watermark band.
	if _, _, _, a := img.At(10, 10).RGBA(); a>>8 < 100 || a>>8 > 160 {
		t.Errorf("alpha at (10,10) = %d, want ≈ 128", a>>8)
	}
	if _, _, _, a := img.At(350, 10).RGBA(); a>>8 != 255 {
		t.Errorf("alpha at (350,10) = %d, want 255", a>>8)
	}
}

// TestProcessWatermark compares a watermarked variant with one that has no
// watermark text: the bottom band must be darker, the rest untouched.
func TestProcessWatermark(t *testing.T) {
	t.Parallel()
	src := media.Generate(1100, 800, 3)
	plain := MustProcess(t, src, media.Options{})
	marked := MustProcess(t, src, testOpts)
	for _, pair := range [][2]media.Variant{{plain.Thumbnail, marked.Thumbnail}, {plain.Medium, marked.Medium}} {
		a, b := MustDecode(t, pair[0]), MustDecode(t, pair[1])
		w, h := a.Bounds().Dx(), a.Bounds().Dy()
		band := 14 // the face is 13 pixels high; the band is at least that
		var changed, darker int
		for y := h - band; y < h; y++ {
			for x := range w {
				la, lb := luma(a, x, y), luma(b, x, y)
				if la != lb {
					changed++
				}
				if lb+20 < la {
					darker++
				}
			}
		}
		if changed < w*band/2 || darker < w*band/4 {
			t.Errorf("%s: %d of %d bottom pixels changed, %d darker", pair[0].Name, changed, w*band, darker)
		}
		// JPEG blocks are 16 pixels high at most, so rows well above the band
		// are bit-for-bit those of the unmarked variant.
		for y := range h / 2 {
			for x := range w {
				if luma(a, x, y) != luma(b, x, y) {
					t.Fatalf("%s: watermark changed pixel (%d,%d) in the top half", pair[0].Name, x, y)
				}
			}
		}
	}
	// The text itself is there: some pixels in the band are light.
	img := MustDecode(t, marked.Medium)
	var light int
	for y := img.Bounds().Dy() - 30; y < img.Bounds().Dy(); y++ {
		for x := range 400 {
			if luma(img, x, y) > 200 {
				light++
			}
		}
	}
	if light < 100 {
		t.Errorf("%d light pixels in the watermark band, want the text's", light)
	}
}

// luma returns the brightness of (x, y), reading the Y plane directly when
// img is a decoded JPEG (At is slow under the race detector).
func luma(img image.Image, x, y int) int {
	if m, ok := img.(*image.YCbCr); ok {
		return int(m.Y[m.YOffset(x, y)])
	}
	r, g, b, _ := img.At(x, y).RGBA()
	return int(299*r+587*g+114*b) / 1000 >> 8
}

func TestProcessDeterministic(t *testing.T) {
	t.Parallel()
	for _, src := range [][]byte{media.Generate(1100, 300, 7), MustPNG(t, 300, 200, true), MustTestdata(t, "blue-purple-pink.lossy.webp")} {
		want := MustProcess(t, src, testOpts)
		// Concurrent runs with equal options must agree byte for byte.
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 3 {
			wg.Go(func() {
				got, err := media.Process(bytes.Clone(src), testOpts)
				if err != nil {
					errs <- err
					return
				}
				for i, v := range got.All() {
					if !bytes.Equal(v.Data, want.All()[i].Data) {
						errs <- fmt.Errorf("%s differs between runs", v.Name)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Another tenant or day is another watermark.
		other := testOpts
		other.Date = other.Date.AddDate(0, 0, 1)
		if bytes.Equal(MustProcess(t, src, other).Medium.Data, want.Medium.Data) {
			t.Error("a different date gave the same medium")
		}
	}
}

func TestProcessCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := media.ProcessContext(ctx, media.Generate(800, 600, 1), testOpts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := media.ProcessContext(ctx, media.Generate(800, 600, 1), testOpts); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestProcessTruncatedPixels(t *testing.T) {
	t.Parallel()
	src := media.Generate(800, 600, 1)
	cut := src[:len(src)/2] // the header is intact, the scan is not
	if _, err := media.Inspect(cut); err != nil {
		t.Fatalf("Inspect of a truncated JPEG: %v (the header is intact)", err)
	}
	_, err := media.Process(cut, testOpts)
	if !holdfast.IsCode(err, holdfast.EINVALID) || !errors.Is(err, media.ErrCorrupt) {
		t.Fatalf("err = %v, want EINVALID wrapping ErrCorrupt", err)
	}
}

func TestProcessLongTenantName(t *testing.T) {
	t.Parallel()
	opts := testOpts
	opts.Tenant = "Ünïcødé & a very long tenant name that cannot possibly fit on a thumbnail of 256 pixels"
	vs := MustProcess(t, media.Generate(60, 40, 1), opts) // narrower than the band's text
	MustDecode(t, vs.Thumbnail)
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	a, b := media.Generate(320, 240, 42), media.Generate(320, 240, 42)
	if !bytes.Equal(a, b) {
		t.Error("same seed, different bytes")
	}
	if bytes.Equal(a, media.Generate(320, 240, 43)) {
		t.Error("different seeds, same bytes")
	}
	info, err := media.Inspect(a)
	if err != nil || info != (media.Info{Format: media.JPEG, Width: 320, Height: 240}) {
		t.Errorf("Inspect = %+v, %v", info, err)
	}
}

// BenchmarkProcess processes a generated 2000×1500 JPEG (a phone photo of a
// receipt, downsized) into both variants.
func BenchmarkProcess(b *testing.B) {
	src := media.Generate(2000, 1500, 1)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := media.Process(src, testOpts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInspect is the upload path's cost per request before any decoding.
func BenchmarkInspect(b *testing.B) {
	src := media.Generate(2000, 1500, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := media.Inspect(src); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleProcess() {
	src := media.Generate(1200, 900, 1) // in production: media.ReadAll(r.Body)
	vs, err := media.Process(src, media.Options{
		Tenant: "Acme Ltd",
		Date:   time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(holdfast.ErrorCode(err), holdfast.ErrorMessage(err))
		return
	}
	for _, v := range vs.All() {
		fmt.Println(v.Name, v.Width, v.Height, v.ContentType())
	}
	// Output:
	// thumbnail 256 192 image/jpeg
	// medium 1024 768 image/jpeg
}

func ExampleInspect() {
	_, err := media.Inspect([]byte("GIF89a..."))
	fmt.Println(holdfast.ErrorCode(err), errors.Is(err, media.ErrFormat))
	// Output:
	// invalid-request true
}
