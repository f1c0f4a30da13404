// Package report writes what the lab measured: a scenario's report.md,
// its chart as a self-contained SVG, and its raw data as JSON, with a
// description of the machine it ran on.
package report
