// Package overload keeps Holdfast answering when it is offered more work
// than it can do: it refuses the excess early and cheaply instead of slowing
// everything down until health checks fail.
//
//   - Lane is a bounded pool for CPU-bound work (image processing, hashing,
//     large JSON): a few slots below the core count and a short wait queue;
//     when both are full the caller gets EOVERLOADED at once, so the cores
//     left over keep serving /healthz and I/O-bound requests.
//   - Limiter is adaptive admission control for one class of requests: a
//     concurrency limit that follows latency (a gradient controller against
//     a windowed-minimum baseline), with a short queue whose timeout follows
//     CoDel (Facebook's "Fail at Scale"): 100 ms while the queue drains, 5 ms
//     once it has stayed non-empty.
//   - Admission holds one Limiter per route class (writes, reads, exports,
//     uploads).
//
// Every refusal is a *holdfast.Error with code EOVERLOADED, which the HTTP
// layer answers with 503 and Retry-After.
package overload
