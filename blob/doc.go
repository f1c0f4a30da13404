// Package blob is a content-addressed store of immutable blobs in a local
// directory.
//
// A blob's key is the lowercase hex SHA-256 of its bytes, and it lives at
// dir/ab/cd/<key>, where ab and cd are the key's first two hex pairs: two
// levels of 256 directories keep each one small. Equal content is stored once:
// putting it again returns the same key and writes nothing new, which makes
// retried and redelivered jobs idempotent.
//
// # Crash safety
//
// A blob is written to a temporary file under dir/tmp (the same file system,
// so the final step is a metadata operation), fsynced, then hard-linked to its
// final name, and the final directory and its parents are fsynced; the
// temporary name is then removed. The final name therefore appears only once the file's bytes are on
// disk, and appears atomically: a reader sees either no blob or the whole
// blob, never a partial one, whatever the moment of a crash. A crash can at
// worst leave a temporary file behind; [New] removes those older than a day.
// Linking, unlike renaming, never replaces an existing name, so a blob once
// stored is never rewritten, not even by a concurrent Put of the same content.
//
// # Deleting
//
// Blobs are deleted only by [Store.Sweep], which removes those older than a
// cutoff that the caller's [InUse] does not claim. Since equal content is
// stored once, a Put may return the key of a blob stored long ago that
// nothing refers to any more; Put therefore sets the blob's modification
// time, and a sweep keeps what was modified after its cutoff. A caller
// that records a key within the grace period (cutoff = now - grace) after
// Put returns it can never see the blob swept from under it.
package blob
