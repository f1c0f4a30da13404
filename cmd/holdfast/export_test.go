package main

// BatchStats is batchStats, the benchmark's per-run summary line.
var BatchStats = batchStats
