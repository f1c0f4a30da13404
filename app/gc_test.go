package app

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	TuneGC()
	// The benchmarks' header reports what the runtime runs with.
	if got, want := GCSettings(), fmt.Sprintf("GOGC %d, memory limit ", defaultGCPercent); !strings.HasPrefix(got, want) || strings.HasSuffix(got, "none") && runtime.GOOS == "linux" {
		t.Errorf("GCSettings %q, want %q and a limit", got, want)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	want := defaultMemoryLimit()
	if want <= 0 {
		if runtime.GOOS == "linux" {
			t.Fatal("no default memory limit: neither the cgroup's nor the machine's memory could be read")
		}
		want = math.MaxInt64 // elsewhere none may be known: then no limit is set
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != want {
		t.Errorf("GOMEMLIMIT unset: memory limit %d, want %d", got, want)
	}

	// The runtime read them at start; TuneGC must leave the settings alone.
	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 30)
	TuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC set: GC percent %d, want it untouched (150)", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != 1<<30 {
		t.Errorf("GOMEMLIMIT set: memory limit %d, want it untouched (1 GiB)", got)
	}
}

func TestDefaultMemoryLimit_Parsing(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"max\n", 0, false},
		{"8589934592\n", 8 << 30, true},
		{"9223372036854771712\n", 9223372036854771712, true}, // v1's "no limit": the machine's memory is lower
		{"0\n", 0, false},
		{"", 0, false},
	} {
		if got, ok := parseCgroupLimit(c.in); got != c.want && c.ok || ok != c.ok {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		total   int64
		cgroups []string
		want    int64
	}{
		{24 << 30, nil, 24 << 30},
		{24 << 30, []string{"max\n"}, 24 << 30},
		{24 << 30, []string{"9223372036854771712\n"}, 24 << 30}, // v1's "no limit"
		{24 << 30, []string{"2147483648\n"}, 2 << 30},
		{0, []string{"2147483648\n"}, 2 << 30},
		{0, []string{"max\n"}, 0},
	} {
		if got := lowestMemory(c.total, c.cgroups); got != c.want {
			t.Errorf("lowestMemory(%d, %q) = %d, want %d", c.total, c.cgroups, got, c.want)
		}
	}
	meminfo := "MemFree:        21531000 kB\nMemTotal:       24684136 kB\nBuffers: 1 kB\n"
	if got, ok := parseMemTotal(strings.NewReader(meminfo)); !ok || got != 24684136<<10 {
		t.Errorf("parseMemTotal = %d, %v; want %d", got, ok, int64(24684136)<<10)
	}
	if _, ok := parseMemTotal(strings.NewReader("MemFree: 1 kB\n")); ok {
		t.Error("parseMemTotal found MemTotal in a meminfo without it")
	}
}
