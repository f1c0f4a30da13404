package load_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/lab/load"
)

// TestMeasureCost_CountsOnlyTheWantedAnswers: the cost is per request
// answered as wanted, and the work left behind (after) is measured too.
func TestMeasureCost_CountsOnlyTheWantedAnswers(t *testing.T) {
	send := func(ctx context.Context, seq int64) (int, error) {
		if seq%2 == 0 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusCreated, nil
	}
	afterRan := false
	after := func(context.Context) error {
		afterRan = true
		load.CPUTask(1, 200_000) // CPU the machine spends after the loop, counted
		return nil
	}
	c, err := load.MeasureCost(t.Context(), "test", 2, 50*time.Millisecond, send, func(s int) bool { return s == http.StatusCreated }, after)
	if err != nil {
		t.Fatal(err)
	}
	if !afterRan {
		t.Error("after did not run")
	}
	if sent := c.Result.OK + c.Result.Failed; c.Answered != c.Result.OK || c.Answered < sent/2-2 || c.Answered > sent/2+2 {
		t.Errorf("answered %d of %d sent, want about half", c.Answered, sent)
	}
	if c.Busy <= 0 || c.PerRequest() != c.Busy/time.Duration(c.Answered) {
		t.Errorf("busy %v, per request %v", c.Busy, c.PerRequest())
	}

	if _, err := load.MeasureCost(t.Context(), "none", 1, 10*time.Millisecond, send, func(int) bool { return false }, nil); err == nil {
		t.Error("no wanted answer: want an error, not a cost of zero")
	}
}

// TestPrintCosts_Arithmetic: at 5× a capacity of 6,000/s, serving 0.9×
// (5,400 transfers at 300 µs = 1.62 cores) and refusing 24,600/s at 60 µs
// (1.476 cores) needs 3.10 cores; on 2 cores a refusal may cost at most
// (2 − 1.62) / 24,600 = 15 µs.
func TestPrintCosts_Arithmetic(t *testing.T) {
	transfer := load.Cost{Name: "transfer", Answered: 1000, Busy: 300 * time.Millisecond}
	refusal := load.Cost{Name: "refusal", Answered: 1000, Busy: 60 * time.Millisecond}
	var b bytes.Buffer
	load.PrintCosts(&b, transfer, refusal, 6000, 2, 5, 0.9)
	out := b.String()
	for _, want := range []string{"300 µs", "60 µs", "= 20.0% of a transfer", "needs 3.10 cores of the machine's 2 (1.62 for the transfers, 1.48 for the refusals)", "at most 15 µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	load.PrintCosts(&b, transfer, refusal, 7000, 2, 5, 0.9) // 6,300 × 300 µs = 1.89 cores: room for 5 µs a refusal
	if !strings.Contains(b.String(), "at most 4 µs") {
		t.Errorf("want a limit of 4 µs:\n%s", b.String())
	}
}
