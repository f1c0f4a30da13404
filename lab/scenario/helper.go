package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// RunHelper runs the part of a scenario that must live in a process of its
// own (Env.Helper starts it): "cpu <mode> <tasks> <iterations>" runs CPU
// tasks and prints a JSON line; "wallet <database URL>" serves a
// NaiveWallet, prints "listening <URL>" and serves until stdin closes.
func RunHelper(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("lab helper: no helper named")
	}
	switch args[0] {
	case "cpu":
		return cpuHelper(args[1:], stdout)
	case "wallet":
		if len(args) != 2 {
			return errors.New("lab helper: wallet <database URL>")
		}
		return walletHelper(ctx, args[1], stdin, stdout)
	}
	return fmt.Errorf("lab helper: unknown helper %q", args[0])
}

// helperProcess is a running helper that announced a URL.
type helperProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	URL   string
}

// startHelper starts a serving helper and waits for its "listening <URL>"
// line.
func startHelper(ctx context.Context, env *Env, args ...string) (*helperProcess, error) {
	cmd := env.Helper(ctx, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &helperProcess{cmd: cmd, stdin: stdin}
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if u, ok := strings.CutPrefix(s.Text(), "listening "); ok {
				lines <- u
				break
			}
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case u, ok := <-lines:
		if ok {
			h.URL = u
			return h, nil
		}
	case <-time.After(30 * time.Second):
	}
	h.stop()
	return nil, fmt.Errorf("lab helper %v did not start", args)
}

// stop closes the helper's stdin, which ends it, and waits; it kills the
// helper if it has not exited after 5 seconds.
func (h *helperProcess) stop() {
	h.stdin.Close()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-done
	}
}
