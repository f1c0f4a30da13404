package media_test

import (
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/media"
)

// FuzzProcess feeds hostile bytes to the whole pipeline: it must never panic,
// every refusal must carry an application code (never EINTERNAL), and every
// accepted image must come out within its boxes. Run it with
// go test -fuzz FuzzProcess -fuzzminimizetime 5s ./media/.
func FuzzProcess(f *testing.F) {
	f.Add(media.Generate(40, 30, 1))
	f.Add(MustPNG(f, 20, 10, true))
	f.Add(MustTestdata(f, "blue-purple-pink.lossy.webp"))
	f.Add(MustTestdata(f, "gopher-doc.with-alpha.lossless.webp"))
	f.Add(pngBomb(f, 100000, 100000))
	f.Add(jpegBomb(f, 65000, 65000))
	f.Add(webpBomb(16384, 16384))
	lim := media.Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 20} // keep each run small
	f.Fuzz(func(t *testing.T, src []byte) {
		vs, err := media.Process(src, media.Options{Tenant: "fuzz", Limits: lim})
		if err != nil {
			if code := holdfast.ErrorCode(err); code != holdfast.EINVALID && code != holdfast.ELIMIT {
				t.Fatalf("code %q for %v", code, err)
			}
			return
		}
		if int64(vs.Source.Width)*int64(vs.Source.Height) > lim.MaxPixels {
			t.Fatalf("accepted %d×%d", vs.Source.Width, vs.Source.Height)
		}
		for _, v := range vs.All() {
			if v.Width < 1 || v.Height < 1 || v.Width > media.MediumSize || v.Height > media.MediumSize || len(v.Data) == 0 {
				t.Fatalf("%s: %d×%d, %d bytes", v.Name, v.Width, v.Height, len(v.Data))
			}
		}
	})
}
