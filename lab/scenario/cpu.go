package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/lab/load"
	"github.com/holdfast/holdfast/lab/report"
)

func init() {
	register(Scenario{
		Name: "cpu", Section: "Part 1, demo",
		Description: "CPU-bound tasks: sequential, concurrent on one thread (GOMAXPROCS=1), parallel on every core",
		Run:         runCPU,
	})
}

// cpuRun is what a cpu helper process measured.
type cpuRun struct {
	Mode       string        `json:"mode"` // sequential, concurrent, parallel
	Tasks      int           `json:"tasks"`
	Iterations int           `json:"iterations"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	Checksum   uint64        `json:"checksum"` // XOR of the tasks' results
}

// runCPUTasks runs tasks CPUTasks one after another ("sequential") or each
// in its own goroutine ("concurrent", "parallel": the same code; which one
// it is depends on GOMAXPROCS).
func runCPUTasks(mode string, tasks, iterations int) cpuRun {
	run := cpuRun{Mode: mode, Tasks: tasks, Iterations: iterations, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	results := make([]uint64, tasks)
	start := time.Now()
	if mode == "sequential" {
		for i := range tasks {
			results[i] = load.CPUTask(i, iterations)
		}
	} else {
		var wg sync.WaitGroup
		for i := range tasks {
			wg.Go(func() { results[i] = load.CPUTask(i, iterations) })
		}
		wg.Wait()
	}
	run.Elapsed = time.Since(start)
	for _, r := range results {
		run.Checksum ^= r
	}
	return run
}

func cpuHelper(args []string, stdout io.Writer) error {
	if len(args) != 3 {
		return errors.New("lab helper: cpu <mode> <tasks> <iterations>")
	}
	tasks, err1 := strconv.Atoi(args[1])
	iterations, err2 := strconv.Atoi(args[2])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(runCPUTasks(args[0], tasks, iterations))
}

// cpuInProcess runs a cpu helper in a new process, with GOMAXPROCS set to
// procs (0: the default, every core), and returns what it measured.
func cpuInProcess(ctx context.Context, env *Env, procs int, mode string, tasks, iterations int) (cpuRun, error) {
	cmd := env.Helper(ctx, "cpu", mode, strconv.Itoa(tasks), strconv.Itoa(iterations))
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return cpuRun{}, fmt.Errorf("cpu helper: %w: %s", err, stderr.Bytes())
	}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("{")) {
			var run cpuRun
			err := json.Unmarshal(line, &run)
			return run, err
		}
	}
	return cpuRun{}, fmt.Errorf("cpu helper printed no result: %s", out)
}

func runCPU(ctx context.Context, env *Env) (*report.Report, error) {
	tasks := pick(env.Scale, 4, 8, 8)
	iterations := pick(env.Scale, 2_000, 400_000, 1_600_000)
	var runs []cpuRun
	for _, v := range []struct {
		mode  string
		procs int
	}{{"sequential", 0}, {"concurrent", 1}, {"parallel", 0}} {
		env.progressf("cpu: %s, %d tasks of %d SHA-256 rounds, in a process of its own", v.mode, tasks, iterations)
		run, err := cpuInProcess(ctx, env, v.procs, v.mode, tasks, iterations)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	r := &report.Report{
		Claim: `Since the CPU has to actually do the work here, sequential and async manner roughly has the same latency
(in fact async has some overhead and actually takes longer) while parallel really shine.
Sequential: 4300ms / Promise.all: 4325ms / Parallel: 2236ms`,
		Measured: fmt.Sprintf(`%d tasks of %d rounds of SHA-256 each, run three ways, each in a fresh process of this
binary (so that GOMAXPROCS is the process's own, as a Node event loop is): one after another; one
goroutine per task with GOMAXPROCS=1 (concurrent on one thread: the Promise.all case); one goroutine
per task with GOMAXPROCS = cores (parallel). Timed inside the process, start-up excluded.`, tasks, iterations),
		Columns: []string{"way", "GOMAXPROCS", "tasks", "total", "checksum"},
		Data:    runs,
		Chart:   &report.Chart{Title: fmt.Sprintf("%d CPU-bound tasks: total time", tasks), YLabel: "total time, ms"},
	}
	names := map[string]string{"sequential": "sequential", "concurrent": "concurrent, one thread", "parallel": "parallel, all cores"}
	for _, run := range runs {
		r.Rows = append(r.Rows, []string{names[run.Mode], fmt.Sprint(run.GOMAXPROCS), fmt.Sprint(run.Tasks), msec(run.Elapsed), fmt.Sprintf("%016x", run.Checksum)})
		group := "one thread"
		if run.Mode == "parallel" {
			group = "all cores"
		}
		r.Chart.Bars = append(r.Chart.Bars, report.Bar{Label: names[run.Mode], Value: float64(run.Elapsed) / 1e6, Group: group})
	}
	r.Findings = []string{
		fmt.Sprintf("concurrent on one thread / sequential: %.2f× (the seed: 4,325 / 4,300 = 1.01×): concurrency without cores buys nothing for CPU work",
			report.Ratio(float64(runs[1].Elapsed), float64(runs[0].Elapsed))),
		fmt.Sprintf("sequential / parallel on %d cores: %.2f× (the seed: 4,300 / 2,236 = 1.92×)", runs[2].GOMAXPROCS,
			report.Ratio(float64(runs[0].Elapsed), float64(runs[2].Elapsed))),
	}
	return r, nil
}
