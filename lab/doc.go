// Package lab is the measurement tree, apart from the product: the
// scenarios of "Building Software That Doesn't Fall Over" and the
// benchmarks, each running the naive way beside Holdfast's on real
// components on loopback, measured in one run and reported as ratios. The
// binary is cmd/holdfast-lab; nothing the server links imports this tree.
//
//   - lab/scenario: the scenarios, their registry and their environment
//   - lab/bench: the benchmarks, their environment, the raw SQL ceiling and
//     data seeding
//   - lab/naive: the naive baselines, never reachable from the service
//   - lab/load: load generators and what they measure (CPU, memory, cost)
//   - lab/report: report.md, charts as SVG, the machine's description
package lab
