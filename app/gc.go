package app

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// defaultGCPercent is the garbage collector's target (GOGC) Holdfast runs
// with when GOGC is not set. The live heap is small and allocation fast, so
// at Go's default of 100 the collector ran several times a second, taking
// CPU from requests on cores the database shares; higher targets cost more
// in page faults as the heap grows than they save. The heap is also bounded
// by defaultMemoryLimit; GOGC and GOMEMLIMIT override both as for any Go
// program. The measurements are in docs/decisions/0013-gogc-400-and-a-memory-limit.md.
const defaultGCPercent = 400

// defaultMemoryLimit returns the soft memory limit Holdfast runs with when
// GOMEMLIMIT is not set: a quarter of the memory the process may use (the
// lower of its cgroup's limit, v2 or v1, and the machine's memory), so that
// a high GOGC cannot grow the heap past it; 0 when none can be read (no
// limit).
func defaultMemoryLimit() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		total, _ = parseMemTotal(f)
		f.Close()
	}
	var cgroups []string
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(path); err == nil {
			cgroups = append(cgroups, string(b))
		}
	}
	return lowestMemory(total, cgroups) / 4
}

// lowestMemory returns the lower of the machine's memory (total, 0 if
// unknown) and the cgroup limits (files' contents) that can be read; 0 if
// none is known. v1's "no limit" is a huge number, never the lower.
func lowestMemory(total int64, cgroups []string) int64 {
	limit := total
	for _, c := range cgroups {
		if n, ok := parseCgroupLimit(c); ok && (limit == 0 || n < limit) {
			limit = n
		}
	}
	return limit
}

// parseCgroupLimit reads a cgroup's memory limit (v2 memory.max, v1
// memory.limit_in_bytes): a byte count, or "max" for none (not ok).
func parseCgroupLimit(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil && n > 0
}

// parseMemTotal reads MemTotal, in bytes, from /proc/meminfo.
func parseMemTotal(r io.Reader) (int64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n << 10, err == nil && n > 0
		}
	}
	return 0, false
}

// TuneGC applies defaultGCPercent unless GOGC is set, and
// defaultMemoryLimit unless GOMEMLIMIT is.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if n := defaultMemoryLimit(); n > 0 {
			debug.SetMemoryLimit(n)
		}
	}
}

// GCSettings describes the collector's target and memory limit as the
// runtime has them, for benchmark headers.
func GCSettings() string {
	samples := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(samples)
	percent := "off"
	if p := samples[0].Value.Uint64(); p > 0 {
		percent = strconv.FormatUint(p, 10)
	}
	limit := "none"
	if n := samples[1].Value.Uint64(); n < 1<<62 {
		limit = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return "GOGC " + percent + ", memory limit " + limit
}
