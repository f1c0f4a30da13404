// Package bench runs Holdfast's benchmarks, each against a fresh database
// with Holdfast beside its naive baseline in one run: transfers (group
// commit, a naive ledger, the raw SQL ceiling), export, events (ingest and
// a burst), receipts (a spike of uploads) and overload (protection on vs
// off); and the soak, the server binary under constant mixed traffic with
// its retention limits shrunk, measured against its own first minutes. It holds their environment, the harnesses the lab scenarios reuse,
// the raw SQL ceiling and the data seeding (accounts, long histories).
package bench
