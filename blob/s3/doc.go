// Package s3 is a content-addressed blob store in an S3-compatible bucket,
// shared by every replica: the same keys and guarantees as package blob's
// local directory, for deployments whose replicas share no disk.
//
// A blob's key is the lowercase hex SHA-256 of its bytes and names the
// object. A put asks for the object first (HEAD) and writes it only if it is
// missing; an S3 PUT is atomic, so a reader sees the whole object or none.
// Two replicas putting the same content at once write the same bytes.
//
// # Deleting without file times
//
// An object's modification time cannot protect it from a sweep (a HEAD does
// not change it, and replicas' clocks drift), so the store records in
// PostgreSQL, through its [Ledger], when each key was last claimed: every
// put claims its keys, in a committed statement, before it asks for or
// writes the objects. A sweep deletes an object only while holding the
// lock on its ledger row, and only if that row's claim is older than the
// sweep's cutoff; it deletes the object, then the row, then commits. A put
// that claims the key meanwhile waits for that commit, finds the row gone,
// claims it anew and then finds the object gone, so it writes it again; a
// put that claimed it first keeps the sweep from deleting it at all. With
// a cutoff older than the longest time between a put and the recording of
// its key (the grace period), a blob about to be referred to is never
// deleted, by any sweep in any replica.
package s3
