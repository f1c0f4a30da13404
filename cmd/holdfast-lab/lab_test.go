package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

func TestLab_List(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"lab", "list"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"io ", "health ", "race ", "double-charge ", "export ", "burst ", "spike "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("lab list lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	if err := run([]string{"lab", "--help"}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "--scale small|full") {
		t.Errorf("lab --help: %v\n%s", err, stdout.String())
	}
}

func TestLab_Errors(t *testing.T) {
	for _, args := range [][]string{{"lab", "nosuch"}, {"lab", "io", "--scale", "huge"}} {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestLab_Scenario runs one scenario through the command, on the test
// binary's database server, and checks the files it writes.
func TestLab_Scenario(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"lab", "double-charge", "--out", out, "--database-url", pgtest.ServerURL()}
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	dir := filepath.Join(out, "double-charge")
	for _, f := range []string{"report.md", "chart.svg", "data.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", f, err)
		}
		if f == "data.json" && !json.Valid(b) {
			t.Errorf("data.json is not JSON")
		}
	}
	if !strings.Contains(stdout.String(), "double-charge/report.md") || !strings.Contains(stderr.String(), "double-charge: naive") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}
