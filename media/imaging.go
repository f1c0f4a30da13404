package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"

	"github.com/holdfast/holdfast"
)

// Defaults of [Limits].
const (
	DefaultMaxBytes  = 10 << 20   // 10 MiB
	DefaultMaxPixels = 40_000_000 // 40 megapixels
)

// Sentinels wrapped by the errors of this package; match them with errors.Is.
// The application code (holdfast.ErrorCode) is given beside each.
var (
	ErrFormat        = errors.New("unsupported image format")  // EINVALID
	ErrCorrupt       = errors.New("corrupt image")             // EINVALID
	ErrTooLarge      = errors.New("image file too large")      // ELIMIT
	ErrTooManyPixels = errors.New("image has too many pixels") // ELIMIT
)

// Format is an image format this package accepts.
type Format string

// The accepted formats. Anything else (GIF, BMP, TIFF, SVG, PDF, …) is refused
// with [ErrFormat].
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	WebP Format = "webp"
)

// ContentType returns the media type of f, or "application/octet-stream" for
// an unknown format.
func (f Format) ContentType() string {
	switch f {
	case JPEG:
		return "image/jpeg"
	case PNG:
		return "image/png"
	case WebP:
		return "image/webp"
	}
	return "application/octet-stream"
}

// Info is what the header of an accepted image says.
type Info struct {
	Format Format
	Width  int
	Height int
}

// Limits bound what an upload may be. The zero value applies the defaults.
type Limits struct {
	// MaxBytes is the largest accepted file. Default DefaultMaxBytes (10 MiB).
	MaxBytes int64
	// MaxPixels is the largest accepted width×height, checked from the header.
	// Default DefaultMaxPixels (40 megapixels).
	MaxPixels int64
}

// WithDefaults returns l with every zero or negative field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	return l
}

// ReadAll reads r to its end with the default limits; see [Limits.ReadAll].
func ReadAll(r io.Reader) ([]byte, error) { return Limits{}.ReadAll(r) }

// ReadAll reads r to its end but never more than MaxBytes+1 bytes, so an
// oversized or endless body costs at most that much memory. Beyond MaxBytes it
// returns an ELIMIT error wrapping [ErrTooLarge]; a read error is returned as
// it is (wrapped).
func (l Limits) ReadAll(r io.Reader) ([]byte, error) {
	l = l.WithDefaults()
	b, err := io.ReadAll(io.LimitReader(r, l.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read image: %w", err)
	}
	if int64(len(b)) > l.MaxBytes {
		return nil, tooLarge(l.MaxBytes)
	}
	return b, nil
}

// Inspect checks b with the default limits; see [Limits.Inspect].
func Inspect(b []byte) (Info, error) { return Limits{}.Inspect(b) }

// Inspect sniffs the format of b from its magic bytes and reads only its header
// to learn the dimensions; no pixel is decoded or allocated. It returns an
// EINVALID error wrapping [ErrFormat] for anything but JPEG, PNG or WebP and
// [ErrCorrupt] for an unreadable header; an ELIMIT error wrapping [ErrTooLarge]
// if b is longer than MaxBytes, or [ErrTooManyPixels] if the header declares
// more than MaxPixels.
func (l Limits) Inspect(b []byte) (Info, error) {
	l = l.WithDefaults()
	if int64(len(b)) > l.MaxBytes {
		return Info{}, tooLarge(l.MaxBytes)
	}
	f, ok := sniff(b)
	if !ok {
		return Info{}, &holdfast.Error{Code: holdfast.EINVALID,
			Message: "the file is not a JPEG, PNG or WebP image", Err: ErrFormat}
	}
	var cfg image.Config
	var err error
	// The decoders are called directly rather than through image.DecodeConfig:
	// that one consults a process-wide registry, which any import of image/gif
	// (or another format) would silently widen.
	switch f {
	case JPEG:
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(b))
	case PNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(b))
	case WebP:
		cfg, err = webp.DecodeConfig(bytes.NewReader(b))
	}
	if err != nil {
		return Info{}, corrupt(f, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Info{}, corrupt(f, fmt.Errorf("dimensions %d×%d", cfg.Width, cfg.Height))
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > l.MaxPixels {
		return Info{}, &holdfast.Error{Code: holdfast.ELIMIT,
			Message: fmt.Sprintf("the image is %d×%d pixels; at most %d megapixels are accepted",
				cfg.Width, cfg.Height, l.MaxPixels/1_000_000),
			Err: ErrTooManyPixels}
	}
	return Info{Format: f, Width: cfg.Width, Height: cfg.Height}, nil
}

// sniff reports the format announced by b's magic bytes.
func sniff(b []byte) (Format, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return JPEG, true
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, true
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return WebP, true
	}
	return "", false
}

func tooLarge(max int64) error {
	return &holdfast.Error{Code: holdfast.ELIMIT,
		Message: fmt.Sprintf("the file is larger than %d bytes", max), Err: ErrTooLarge}
}

func corrupt(f Format, cause error) error {
	return &holdfast.Error{Code: holdfast.EINVALID,
		Message: fmt.Sprintf("the file is not a readable %s image", f),
		Err:     fmt.Errorf("%w: %w", ErrCorrupt, cause)}
}
