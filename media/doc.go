// Package media guards, resizes, watermarks and encodes uploaded receipt
// images.
//
// The guards run on untrusted bytes before anything is decoded: [Limits.ReadAll]
// bounds the upload's size, and [Limits.Inspect] sniffs the format from the
// magic bytes (never from a Content-Type) and reads only the header to learn the
// dimensions, so a decompression bomb — a few hundred bytes declaring
// 100000×100000 pixels — is refused before its pixels are allocated.
//
// [Process] then decodes an accepted image and derives the variants the receipt
// pipeline serves: a thumbnail (within 256×256) and a medium (within
// 1024×1024), never upscaled, each watermarked with the tenant's name and the
// date. Processing is a pure function of its input: the same bytes and the same
// [Options] give byte-identical variants, so a redelivered job stores the same
// blobs under the same keys.
//
// Errors carry the application codes of the root package: EINVALID for bytes
// that are not a supported image, ELIMIT for an image over a limit. Each also
// wraps a sentinel ([ErrFormat], [ErrCorrupt], [ErrTooLarge], [ErrTooManyPixels])
// so a caller can tell the cases apart with errors.Is, e.g. to answer 413 for
// [ErrTooLarge].
package media
