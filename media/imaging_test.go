package media_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
)

// MustPNG returns a w×h PNG; with alpha its left half is half transparent.
func MustPNG(t testing.TB, w, h int, alpha bool) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha && x < w/2 {
				a = 128
			}
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 90, a})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// MustTestdata returns the bytes of testdata/name.
func MustTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngBomb returns a valid-looking PNG of a few dozen bytes whose header
// declares w×h pixels.
func pngBomb(t testing.TB, w, h uint32) []byte {
	b := MustPNG(t, 1, 1, false)
	// 8-byte signature, then IHDR: length(4) "IHDR"(4) width(4) height(4) … crc.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// jpegBomb returns a generated JPEG whose frame header is patched to declare
// w×h pixels.
func jpegBomb(t testing.TB, w, h uint16) []byte {
	b := media.Generate(16, 16, 1)
	i := bytes.Index(b, []byte{0xff, 0xc0}) // SOF0: marker, length(2), precision(1), height(2), width(2)
	if i < 0 {
		t.Fatal("no SOF0 in generated JPEG")
	}
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

// webpBomb returns an extended-format WebP header declaring a w×h canvas.
func webpBomb(w, h uint32) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00")
	b = append(b, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

func TestInspect(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		src    []byte
		format media.Format
		w, h   int
	}{
		{"jpeg", media.Generate(640, 480, 1), media.JPEG, 640, 480},
		{"png", MustPNG(t, 300, 200, false), media.PNG, 300, 200},
		{"png alpha", MustPNG(t, 30, 20, true), media.PNG, 30, 20},
		{"webp lossy", MustTestdata(t, "blue-purple-pink.lossy.webp"), media.WebP, 150, 100},
		{"webp lossless alpha", MustTestdata(t, "gopher-doc.with-alpha.lossless.webp"), media.WebP, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := media.Inspect(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != tt.format {
				t.Errorf("format = %q, want %q", info.Format, tt.format)
			}
			if tt.w != 0 && (info.Width != tt.w || info.Height != tt.h) {
				t.Errorf("size = %d×%d, want %d×%d", info.Width, info.Height, tt.w, tt.h)
			}
			if info.Width <= 0 || info.Height <= 0 {
				t.Errorf("size = %d×%d", info.Width, info.Height)
			}
		})
	}
}

func TestInspectRefusesNonImages(t *testing.T) {
	t.Parallel()
	// This test imports image/gif, which registers GIF with image.Decode: the
	// refusal below shows Inspect does not go through that registry.
	var g bytes.Buffer
	if err := gif.Encode(&g, image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.Black, color.White}), nil); err != nil {
		t.Fatal(err)
	}
	pngHeaderOnly := MustPNG(t, 4, 4, false)[:8]
	for _, tt := range []struct {
		name     string
		src      []byte
		sentinel error
	}{
		{"gif", g.Bytes(), media.ErrFormat},
		{"text", []byte("%PDF-1.7 or just some text pretending to be image/jpeg"), media.ErrFormat},
		{"svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), media.ErrFormat},
		{"empty", nil, media.ErrFormat},
		{"riff but not webp", []byte("RIFF\x04\x00\x00\x00WAVE"), media.ErrFormat},
		{"png signature only", pngHeaderOnly, media.ErrCorrupt},
		{"jpeg magic then garbage", []byte("\xff\xd8\xffgarbage garbage garbage"), media.ErrCorrupt},
		{"png zero width", pngBomb(t, 0, 10), media.ErrCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := media.Inspect(tt.src)
			if !holdfast.IsCode(err, holdfast.EINVALID) || !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %s wrapping %v", err, holdfast.EINVALID, tt.sentinel)
			}
			if _, err := media.Process(tt.src, media.Options{}); !errors.Is(err, tt.sentinel) {
				t.Fatalf("Process err = %v, want %v", err, tt.sentinel)
			}
		})
	}
}

// TestInspectRefusesBombBeforeAllocating is not parallel: it measures the
// process-wide TotalAlloc, which parallel tests would inflate.
func TestInspectRefusesBombBeforeAllocating(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  []byte
	}{
		{"png 100000x100000", pngBomb(t, 100000, 100000)},
		{"png 1x40000001", pngBomb(t, 1, 40_000_001)},
		{"jpeg 65000x65000", jpegBomb(t, 65000, 65000)},
		{"webp 16384x16384", webpBomb(16384, 16384)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []struct {
				name string
				fn   func() error
			}{
				{"Inspect", func() error { _, err := media.Inspect(tt.src); return err }},
				{"Process", func() error { _, err := media.Process(tt.src, media.Options{}); return err }},
			} {
				if err := f.fn(); !holdfast.IsCode(err, holdfast.ELIMIT) || !errors.Is(err, media.ErrTooManyPixels) {
					t.Fatalf("%s: err = %v, want %s wrapping ErrTooManyPixels", f.name, err, holdfast.ELIMIT)
				}
				const runs = 50
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range runs {
					f.fn()
				}
				runtime.ReadMemStats(&after)
				// Decoding would need gigabytes; reading a header needs a few KiB
				// (the JPEG decoder's reader buffer and Huffman tables).
				perRun := (after.TotalAlloc - before.TotalAlloc) / runs
				if perRun > 64<<10 {
					t.Errorf("%s allocated %d bytes per call refusing a bomb", f.name, perRun)
				}
				t.Logf("%s: %d bytes, %.0f allocations per call", f.name, perRun,
					testing.AllocsPerRun(runs, func() { f.fn() }))
			}
		})
	}
}

func TestLimitsBytes(t *testing.T) {
	t.Parallel()
	lim := media.Limits{MaxBytes: 1000}
	b, err := lim.ReadAll(bytes.NewReader(make([]byte, 1000)))
	if err != nil || len(b) != 1000 {
		t.Fatalf("exactly MaxBytes: len %d, err %v", len(b), err)
	}
	_, err = lim.ReadAll(bytes.NewReader(make([]byte, 1001)))
	if !holdfast.IsCode(err, holdfast.ELIMIT) || !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("MaxBytes+1: err = %v, want ELIMIT wrapping ErrTooLarge", err)
	}

	// An endless body is cut off after MaxBytes+1 bytes.
	endless := &countingReader{}
	if _, err := lim.ReadAll(endless); !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("endless: err = %v", err)
	}
	if endless.n > 1001 {
		t.Errorf("read %d bytes of an endless body, want ≤ 1001", endless.n)
	}

	// The default is 10 MiB, and Inspect and Process refuse longer input too.
	big := append(media.Generate(64, 64, 1), make([]byte, media.DefaultMaxBytes)...)
	if _, err := media.ReadAll(bytes.NewReader(big)); !errors.Is(err, media.ErrTooLarge) {
		t.Errorf("ReadAll 10 MiB+: err = %v", err)
	}
	if _, err := media.Inspect(big); !errors.Is(err, media.ErrTooLarge) {
		t.Errorf("Inspect 10 MiB+: err = %v", err)
	}
	if _, err := media.Process(big, media.Options{}); !errors.Is(err, media.ErrTooLarge) {
		t.Errorf("Process 10 MiB+: err = %v", err)
	}

	// A read error is passed on, not mistaken for a limit.
	boom := errors.New("boom")
	if _, err := lim.ReadAll(io.MultiReader(strings.NewReader("abc"), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("read error: err = %v", err)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) { r.n += len(p); return len(p), nil }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
