package natstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// serverModule is the module of the embedded NATS server, which Built
// builds: a version that clusters JetStream properly (Debian's 2.9 is
// older than the one Holdfast embeds).
const serverModule = "github.com/nats-io/nats-server/v2"

var built struct {
	once sync.Once
	path string
	err  error
}

// Built returns the path of a nats-server binary of the version go.mod
// requires, built from the module into bin/tools/nats-server at the
// repository's root the first time any test on the machine asks for it (a
// lock file keeps parallel test binaries from building it at once). It
// fails tb when it cannot be built.
func Built(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() { built.path, built.err = build() })
	if built.err != nil {
		tb.Fatalf("natstest: nats-server from %s: %v", serverModule, built.err)
	}
	return built.path
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(serverModule) + `\s+(v\S+)`).FindSubmatch(mod)
	if m == nil {
		return "", fmt.Errorf("go.mod does not require %s", serverModule)
	}
	version := string(m[1])
	dir := filepath.Join(root, "bin", "tools")
	bin := filepath.Join(dir, "nats-server")
	if hasVersion(bin, version) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".nats-server.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if hasVersion(bin, version) { // another test binary built it while this one waited
		return bin, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("no go command on PATH to build it with")
	}
	tmp := bin + ".tmp"
	cmd := exec.Command(gobin, "build", "-o", tmp, serverModule)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w: %s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// hasVersion reports whether bin is a nats-server of the version.
func hasVersion(bin, version string) bool {
	out, err := exec.Command(bin, "--version").Output()
	return err == nil && strings.TrimSpace(string(bytes.TrimPrefix(out, []byte("nats-server: ")))) == version
}

// moduleRoot is the directory of Holdfast's go.mod, above the test's
// working directory (its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/holdfast/holdfast\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/holdfast/holdfast above the working directory")
		}
		dir = parent
	}
}
