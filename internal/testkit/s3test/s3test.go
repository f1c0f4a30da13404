// Package s3test starts a real S3-compatible server for a test: versitygw,
// an S3 gateway over a directory that checks request signatures as S3
// does. It installs versitygw into the module's bin/tools on first use
// (go install, from the Go module proxy; about a minute and a half the
// first time), under a lock file so that test packages running in
// parallel build it once.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the versitygw release the harness installs.
const Version = "v1.8.0"

const module = "github.com/versity/versitygw/cmd/versitygw"

// Server is a running versitygw with one bucket.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	Bucket    string
	Region    string
	AccessKey string
	SecretKey string
}

// URL returns the --blob-url of the server's bucket.
func (s *Server) URL() string {
	return "s3://" + s.Bucket + "?endpoint=" + url.QueryEscape(s.Endpoint) + "&region=" + s.Region
}

// Client returns a client of the server, for a test to look at the bucket
// behind the store's back.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	u, _ := url.Parse(s.Endpoint)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region: s.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// MustStart installs versitygw if needed, starts it on a free loopback port
// over a temporary directory, creates a bucket and returns the server; it
// is stopped when tb ends. It fails tb if any step fails: a test that needs
// S3 never skips.
func MustStart(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Install()
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Bucket: "receipts", Region: "us-east-1", AccessKey: "holdfast-test", SecretKey: "holdfast-test-secret-0123456789"}
	var last error
	for range 5 { // a free port may be taken between choosing and binding it
		if last = s.start(tb, bin); last == nil {
			return s
		}
	}
	tb.Fatal(last)
	return nil
}

// start runs versitygw on a port free a moment ago and creates the bucket.
func (s *Server) start(tb testing.TB, bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	root := tb.TempDir()
	log, err := os.Create(filepath.Join(root, "versitygw.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	data := filepath.Join(root, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", addr, "posix", "--sidecar", filepath.Join(root, "meta"), data)
	cmd.Stdout, cmd.Stderr = log, log
	if err := os.Mkdir(filepath.Join(root, "meta"), 0o750); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	s.Endpoint = "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client(tb)
	for {
		err = c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
		if err == nil {
			tb.Cleanup(stop)
			return nil
		}
		select {
		case werr := <-exited:
			out, _ := os.ReadFile(log.Name())
			return fmt.Errorf("versitygw on %s exited (%v): %s", addr, werr, out)
		case <-ctx.Done():
			stop()
			return fmt.Errorf("versitygw on %s: create bucket: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Install builds versitygw into bin/tools at the module's root unless it
// is there already, and returns its path. Concurrent calls, in any process,
// build it once.
func Install() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, "bin", "tools")
	bin := filepath.Join(tools, "versitygw-"+Version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(tools, 0o750); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(tools, ".versitygw.lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built while this call waited for the lock
	}
	// Built into a directory of its own, then renamed: a build cut short
	// leaves no binary that looks installed.
	tmp, err := os.MkdirTemp(tools, "versitygw-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", module+"@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	cmd.Dir = tmp // an install at a version ignores the go.mod around it
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", module, Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// moduleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("s3test: no go.mod above the working directory")
		}
		dir = parent
	}
}
