package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestServerLinksNoMeasurementCode: the server binary links none of the
// measurement tree (benchmarks, naive baselines, load generators); those
// are holdfast-lab's.
func TestServerLinksNoMeasurementCode(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const lab = "github.com/holdfast/holdfast/lab"
	var linked []string
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == lab || strings.HasPrefix(pkg, lab+"/") {
			linked = append(linked, pkg)
		}
	}
	if len(linked) > 0 {
		t.Fatalf("cmd/holdfast links the measurement code: %v", linked)
	}
	if !strings.Contains(string(out), "github.com/holdfast/holdfast/app\n") {
		t.Fatalf("go list -deps printed no app package; is the test listing the right package?\n%s", out)
	}
}
