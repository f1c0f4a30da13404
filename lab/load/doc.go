// Package load generates load and measures what it costs: closed and open
// loops (the latter timed from each request's intended send time, free of
// coordinated omission), a lean keep-alive HTTP/1.1 client for them, the
// open-loop overload runner with its /healthz probe, CPU-bound jobs, and
// the machine's CPU and this process's memory while they run.
package load
