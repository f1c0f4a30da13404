package media

import (
	"encoding/binary"
	"image"
)

// Orientation values of the EXIF Orientation tag (0x0112): how the stored
// pixels must be transformed to show the picture upright. A phone held
// sideways stores the sensor's rows as they came and says 6 or 8 here
// instead of rotating the pixels.
const (
	OrientationNormal     = 1
	OrientationFlipH      = 2 // mirrored left to right
	OrientationRotate180  = 3
	OrientationFlipV      = 4 // mirrored top to bottom
	OrientationTranspose  = 5 // mirrored across the main diagonal
	OrientationRotate90   = 6 // to be turned 90° clockwise
	OrientationTransverse = 7 // mirrored across the anti-diagonal
	OrientationRotate270  = 8 // to be turned 90° counter-clockwise
)

// jpegOrientation returns the EXIF Orientation of the JPEG b, or
// OrientationNormal if it has none or says something out of range. It reads
// the markers before the image data only, and every length is checked: a
// malformed segment means "no orientation", never a panic or a long scan.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return OrientationNormal
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return OrientationNormal
		}
		marker := b[i+1]
		switch {
		case marker == 0xFF: // fill byte
			i++
			continue
		case marker == 0x01 || marker >= 0xD0 && marker <= 0xD8: // no length
			i += 2
			continue
		case marker == 0xDA || marker == 0xD9: // start of scan, end of image: no EXIF after them
			return OrientationNormal
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return OrientationNormal
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o, ok := tiffOrientation(seg[6:]); ok {
				return o
			}
		}
		i += 2 + n
	}
	return OrientationNormal
}

// tiffOrientation reads the Orientation tag from the first IFD of the TIFF
// structure t (EXIF's payload).
func tiffOrientation(t []byte) (int, bool) {
	if len(t) < 8 {
		return 0, false
	}
	var order binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return 0, false
	}
	if order.Uint16(t[2:]) != 42 {
		return 0, false
	}
	ifd := int64(order.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 0, false
	}
	count := int64(order.Uint16(t[ifd:]))
	for k := range count {
		e := ifd + 2 + 12*k
		if e+12 > int64(len(t)) {
			return 0, false
		}
		const tagOrientation, typeShort = 0x0112, 3
		if order.Uint16(t[e:]) != tagOrientation {
			continue
		}
		if order.Uint16(t[e+2:]) != typeShort || order.Uint32(t[e+4:]) != 1 {
			return 0, false
		}
		o := int(order.Uint16(t[e+8:]))
		if o < OrientationNormal || o > OrientationRotate270 {
			return 0, false
		}
		return o, true
	}
	return 0, false
}

// orient returns img turned and mirrored as orientation o says, so that it
// shows upright; img itself for OrientationNormal or an unknown value.
func orient(img *image.RGBA, o int) *image.RGBA {
	if o <= OrientationNormal || o > OrientationRotate270 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	// src(x, y) gives, for the output pixel (x, y), the source pixel it shows.
	var src func(x, y int) (int, int)
	ow, oh := w, h
	switch o {
	case OrientationFlipH:
		src = func(x, y int) (int, int) { return w - 1 - x, y }
	case OrientationRotate180:
		src = func(x, y int) (int, int) { return w - 1 - x, h - 1 - y }
	case OrientationFlipV:
		src = func(x, y int) (int, int) { return x, h - 1 - y }
	case OrientationTranspose:
		ow, oh = h, w
		src = func(x, y int) (int, int) { return y, x }
	case OrientationRotate90:
		ow, oh = h, w
		src = func(x, y int) (int, int) { return y, h - 1 - x }
	case OrientationTransverse:
		ow, oh = h, w
		src = func(x, y int) (int, int) { return w - 1 - y, h - 1 - x }
	case OrientationRotate270:
		ow, oh = h, w
		src = func(x, y int) (int, int) { return w - 1 - y, x }
	}
	dst := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := range oh {
		row := dst.Pix[y*dst.Stride:]
		for x := range ow {
			sx, sy := src(x, y)
			copy(row[4*x:4*x+4], img.Pix[img.PixOffset(b.Min.X+sx, b.Min.Y+sy):])
		}
	}
	return dst
}
