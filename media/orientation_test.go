package media

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"slices"
	"testing"
)

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// withEXIF returns the JPEG j with an APP1 EXIF segment after its SOI
// (after an APP0 JFIF segment if j starts with one) whose first IFD holds
// the entries given as (tag, type, count, value) in the byte order order.
func withEXIF(t testing.TB, j []byte, order byteOrder, entries ...[4]uint32) []byte {
	t.Helper()
	tiff := make([]byte, 8, 64)
	if order == binary.LittleEndian {
		copy(tiff, "II")
	} else {
		copy(tiff, "MM")
	}
	order.PutUint16(tiff[2:], 42)
	order.PutUint32(tiff[4:], 8)
	tiff = order.AppendUint16(tiff, uint16(len(entries)))
	for _, e := range entries {
		tiff = order.AppendUint16(tiff, uint16(e[0]))
		tiff = order.AppendUint16(tiff, uint16(e[1]))
		tiff = order.AppendUint32(tiff, e[2])
		tiff = order.AppendUint16(tiff, uint16(e[3])) // a SHORT sits in the first two bytes of the value field
		tiff = append(tiff, 0, 0)
	}
	tiff = order.AppendUint32(tiff, 0) // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := append([]byte{0xFF, 0xE1}, byte((len(seg)+2)>>8), byte(len(seg)+2))
	app1 = append(app1, seg...)
	at := 2
	if len(j) > 6 && j[2] == 0xFF && j[3] == 0xE0 {
		at = 4 + int(binary.BigEndian.Uint16(j[4:]))
	}
	return slices.Concat(j[:at], app1, j[at:])
}

func orientationEntry(o int) [4]uint32 { return [4]uint32{0x0112, 3, 1, uint32(o)} }

func testJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestJPEGOrientation(t *testing.T) {
	plain := testJPEG(t, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	jfif := slices.Concat(plain[:2], []byte{0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}, plain[2:])
	other := [4]uint32{0x010F, 2, 4, 0} // Make, an ASCII string: skipped
	for _, tt := range []struct {
		name string
		src  []byte
		want int
	}{
		{"no EXIF", plain, OrientationNormal},
		{"little-endian, rotate 90", withEXIF(t, plain, binary.LittleEndian, orientationEntry(6)), OrientationRotate90},
		{"big-endian, rotate 270", withEXIF(t, plain, binary.BigEndian, orientationEntry(8)), OrientationRotate270},
		{"after another tag", withEXIF(t, plain, binary.BigEndian, other, orientationEntry(3)), OrientationRotate180},
		{"after a JFIF segment", withEXIF(t, jfif, binary.LittleEndian, orientationEntry(5)), OrientationTranspose},
		{"no orientation tag", withEXIF(t, plain, binary.LittleEndian, other), OrientationNormal},
		{"out of range", withEXIF(t, plain, binary.LittleEndian, orientationEntry(9)), OrientationNormal},
		{"zero", withEXIF(t, plain, binary.LittleEndian, orientationEntry(0)), OrientationNormal},
		{"not a SHORT", withEXIF(t, plain, binary.LittleEndian, [4]uint32{0x0112, 4, 1, 6}), OrientationNormal},
		{"two values", withEXIF(t, plain, binary.LittleEndian, [4]uint32{0x0112, 3, 2, 6}), OrientationNormal},
		{"not a JPEG", []byte("GIF89a....."), OrientationNormal},
		{"empty", nil, OrientationNormal},
	} {
		if got := jpegOrientation(tt.src); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}

	// Every truncation of a tagged file parses without panic and finds the
	// tag only where the whole segment is there.
	tagged := withEXIF(t, plain, binary.LittleEndian, other, orientationEntry(6))
	segEnd := 2 + 2 + int(binary.BigEndian.Uint16(tagged[4:]))
	for n := range len(tagged) {
		want := OrientationRotate90
		if n < segEnd {
			want = OrientationNormal
		}
		if got := jpegOrientation(tagged[:n]); got != want {
			t.Fatalf("truncated to %d bytes (the segment ends at %d): %d, want %d", n, segEnd, got, want)
		}
	}
	// A length that points past the end, or below its own two bytes.
	bad := slices.Clone(tagged)
	bad[4], bad[5] = 0xFF, 0xFF
	if got := jpegOrientation(bad); got != OrientationNormal {
		t.Errorf("segment longer than the file: %d", got)
	}
	bad[4], bad[5] = 0, 1
	if got := jpegOrientation(bad); got != OrientationNormal {
		t.Errorf("segment length 1: %d", got)
	}
}

// TestOrient: a 3×2 image with numbered pixels, turned for every
// orientation. The grids are EXIF's definitions written out: for 6, the
// stored first row is the right-hand column and the stored first column the
// top row; for 8, the first row is the left column and the first column the
// bottom row; and so on.
func TestOrient(t *testing.T) {
	// 1 2 3
	// 4 5 6
	src := image.NewRGBA(image.Rect(10, 20, 13, 22)) // not at the origin: orient must honour Min
	for i, p := range []image.Point{{10, 20}, {11, 20}, {12, 20}, {10, 21}, {11, 21}, {12, 21}} {
		src.SetRGBA(p.X, p.Y, color.RGBA{uint8(i + 1), 0, 0, 255})
	}
	for _, tt := range []struct {
		o    int
		want [][]uint8
	}{
		{OrientationNormal, [][]uint8{{1, 2, 3}, {4, 5, 6}}},
		{OrientationFlipH, [][]uint8{{3, 2, 1}, {6, 5, 4}}},
		{OrientationRotate180, [][]uint8{{6, 5, 4}, {3, 2, 1}}},
		{OrientationFlipV, [][]uint8{{4, 5, 6}, {1, 2, 3}}},
		{OrientationTranspose, [][]uint8{{1, 4}, {2, 5}, {3, 6}}},
		{OrientationRotate90, [][]uint8{{4, 1}, {5, 2}, {6, 3}}},
		{OrientationTransverse, [][]uint8{{6, 3}, {5, 2}, {4, 1}}},
		{OrientationRotate270, [][]uint8{{3, 6}, {2, 5}, {1, 4}}},
		{42, [][]uint8{{1, 2, 3}, {4, 5, 6}}},
	} {
		got := orient(src, tt.o)
		b := got.Bounds()
		if b.Dy() != len(tt.want) || b.Dx() != len(tt.want[0]) {
			t.Errorf("orientation %d: %v, want %d×%d", tt.o, b, len(tt.want[0]), len(tt.want))
			continue
		}
		for y, row := range tt.want {
			for x, v := range row {
				if p := got.RGBAAt(b.Min.X+x, b.Min.Y+y); p.R != v || p.A != 255 {
					t.Errorf("orientation %d: pixel (%d,%d) is %d, want %d", tt.o, x, y, p.R, v)
				}
			}
		}
	}
}

// TestProcessTurnsUpright: a landscape JPEG, red on the left and blue on
// the right, that says "turn 90° clockwise" comes out as a portrait with
// red on top, in both variants and with the watermark drawn on the result.
func TestProcessTurnsUpright(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 400, 200))
	for y := range 200 {
		for x := range 400 {
			c := color.RGBA{220, 20, 20, 255}
			if x >= 200 {
				c = color.RGBA{20, 20, 220, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	plain := testJPEG(t, img)
	for _, tt := range []struct {
		name     string
		src      []byte
		w, h     int
		at, want []image.Point // sample points, and whether red (0) or blue (1) there
	}{
		{"no orientation", plain, 400, 200, []image.Point{{100, 150}, {300, 150}}, []image.Point{{0, 0}, {1, 0}}},
		{"rotate 90", withEXIF(t, plain, binary.BigEndian, orientationEntry(6)), 200, 400, []image.Point{{100, 100}, {100, 300}}, []image.Point{{0, 0}, {1, 0}}},
		{"rotate 270", withEXIF(t, plain, binary.LittleEndian, orientationEntry(8)), 200, 400, []image.Point{{100, 100}, {100, 300}}, []image.Point{{1, 0}, {0, 0}}},
	} {
		vs, err := Process(tt.src, Options{Tenant: "t"})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if vs.Source.Width != 400 || vs.Source.Height != 200 {
			t.Errorf("%s: source %d×%d, want the stored 400×200", tt.name, vs.Source.Width, vs.Source.Height)
		}
		for _, v := range vs.All() {
			out, err := jpeg.Decode(bytes.NewReader(v.Data))
			if err != nil {
				t.Fatalf("%s %s: %v", tt.name, v.Name, err)
			}
			scale := float64(v.Width) / float64(tt.w)
			if v.Width != out.Bounds().Dx() || v.Height != out.Bounds().Dy() || (v.Width > v.Height) != (tt.w > tt.h) {
				t.Fatalf("%s %s: %d×%d (decoded %v), want the shape of %d×%d", tt.name, v.Name, v.Width, v.Height, out.Bounds(), tt.w, tt.h)
			}
			for i, p := range tt.at {
				r, _, b, _ := out.At(int(float64(p.X)*scale), int(float64(p.Y)*scale)).RGBA()
				if blue := b > r; blue != (tt.want[i].X == 1) {
					t.Errorf("%s %s: at %v (scaled %.2f) r=%d b=%d, want %s", tt.name, v.Name, p, scale, r>>8, b>>8, map[bool]string{false: "red", true: "blue"}[tt.want[i].X == 1])
				}
			}
		}
	}
}

func FuzzJPEGOrientation(f *testing.F) {
	plain := testJPEG(f, image.NewRGBA(image.Rect(0, 0, 4, 4)))
	f.Add(plain)
	f.Add(withEXIF(f, plain, binary.LittleEndian, orientationEntry(6)))
	f.Add(withEXIF(f, plain, binary.BigEndian, [4]uint32{0x010F, 2, 4, 0}, orientationEntry(8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if o := jpegOrientation(b); o < OrientationNormal || o > OrientationRotate270 {
			t.Fatalf("orientation %d", o)
		}
	})
}
