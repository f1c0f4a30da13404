// Package naive holds the naive ways Holdfast is measured against, real
// code that really fails: a ledger with one transaction per request, an
// export built whole in memory, a receipt consumer with a goroutine and a
// connection per message, an in-memory event queue, wallets guarded by
// textbook locking. None of it is reachable from the service.
package naive
