// Package lab runs the scenarios of "Building Software That Doesn't Fall
// Over" against real components on loopback (PostgreSQL, NATS, HTTP): the
// naive way beside Holdfast's, measured in one run and reported as ratios.
//
// Everything naive lives here under a plain name and is never reachable from
// the service's API: it exists to be measured against.
package lab
