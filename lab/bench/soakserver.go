package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// soakLimit is one server setting the soak shrinks so that what a
// deployment turns over in days turns over several times in one run. Value
// derives it from the run's retention period (SoakOptions.Retention).
type soakLimit struct {
	Flag  string
	Value func(retention time.Duration) string
	Why   string
}

// soakLimits is the one place the soak's shrunk settings are written.
// --events-max-age is not among them: the stream's age limit drops events
// whether or not the groups applied them, so shrunk it turns a lagging
// group into lost events; the replay window, which waits for every group,
// turns the stream over instead. --events-max-bytes is left at its
// default: a stream at its cap holds the ledger's events back in the
// outbox, which the soak would show only as lag; the byte cap has tests
// and a benchmark of its own.
var soakLimits = []soakLimit{
	{Flag: "events-duplicate-window", Value: scaled(0.5), Why: "the stream server's in-memory id window turns over twice per period"},
	{Flag: "idempotency-retention", Value: scaled(1), Why: "Idempotency-Keys' partitions rotate every quarter of a period and are dropped one period after they end"},
	{Flag: "events-replay-window", Value: scaled(1), Why: "an event every group applied leaves the stream one period after it was stored"},
}

// scaled returns a Value of f × the retention period, rounded to seconds.
func scaled(f float64) func(time.Duration) string {
	return func(r time.Duration) string {
		return max(time.Second, time.Duration(f*float64(r)).Round(time.Second)).String()
	}
}

// soakServer is `holdfast serve` in a child process of its own, so that its
// RSS and heap are the server's alone, not the load generator's.
type soakServer struct {
	cmd        *exec.Cmd
	base       string
	adminToken string
	dataDir    string
	exited     chan error
	passed     []string // the limits passed, as --flag=value
}

// startSoakServer runs bin serve on dbURL with the soak's limits for the
// retention period and waits until it is ready; the server's warnings and
// errors go to stderr.
func startSoakServer(ctx context.Context, bin, dbURL, dataDir string, retention time.Duration, stderr io.Writer) (*soakServer, error) {
	var b [24]byte
	rand.Read(b[:])
	s := &soakServer{adminToken: hex.EncodeToString(b[:]), dataDir: dataDir, exited: make(chan error, 1)}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info", "--rate-limit", "0"}
	for _, l := range soakLimits {
		arg := "--" + l.Flag + "=" + l.Value(retention)
		args = append(args, arg)
		s.passed = append(s.passed, arg)
	}
	s.cmd = exec.Command(bin, args...)
	// The database URL and the token go in the environment, out of the
	// process list.
	s.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "HOLDFAST_ADMIN_TOKEN="+s.adminToken)
	logs, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addr := make(chan string, 1)
	go scanServerLog(logs, addr, stderr)
	go func() { s.exited <- s.cmd.Wait() }()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-s.exited:
		return nil, fmt.Errorf("holdfast serve exited before listening: %v", err)
	case <-time.After(2 * time.Minute):
		s.stop()
		return nil, errors.New("holdfast serve did not listen within 2 minutes")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	for i := 0; ; i++ {
		if resp, err := http.Get(s.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if i == 1200 {
			s.stop()
			return nil, errors.New("holdfast serve never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scanServerLog reads the server's JSON log: the address it listens on goes
// to addr, warnings and errors to stderr, the rest (info) is dropped.
func scanServerLog(r io.Reader, addr chan<- string, stderr io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Addr  string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			fmt.Fprintf(stderr, "  holdfast: %s\n", sc.Bytes())
			continue
		}
		switch {
		case line.Msg == "holdfast listening" && line.Addr != "":
			select {
			case addr <- line.Addr:
			default:
			}
		case line.Level == "WARN" || line.Level == "ERROR":
			fmt.Fprintf(stderr, "  holdfast: %s\n", sc.Bytes())
		}
	}
}

// stop ends the server with SIGTERM (it drains and exits), or kills it if
// it has not exited within a minute.
func (s *soakServer) stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// rss returns the server process's resident set size in bytes.
func (s *soakServer) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// metric returns the value of an unlabelled metric from /metrics.
func (s *soakServer) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

// groupLag is one consumer group's lag as the admin API reports it.
type groupLag struct {
	Name        string  `json:"name"`
	LagMessages int64   `json:"lag_messages"`
	LagSeconds  float64 `json:"lag_seconds"`
}

// lags returns each consumer group's lag.
func (s *soakServer) lags(ctx context.Context) ([]groupLag, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/admin/consumers", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/admin/consumers: %s", resp.Status)
	}
	var body struct {
		Data []groupLag `json:"data"`
	}
	return body.Data, json.NewDecoder(resp.Body).Decode(&body)
}

// natsBytes returns the size of the embedded NATS server's files.
func (s *soakServer) natsBytes() int64 { return dirSize(filepath.Join(s.dataDir, "nats")) }

// dirSize returns the bytes of the regular files under dir (0 if none).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
