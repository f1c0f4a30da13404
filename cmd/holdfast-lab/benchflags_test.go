package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestBenchTransfers_RefusesBadOpenLoops: an open-loop fraction outside (0, 2],
// one that is not a number, a negative rate or warm-up, or a rate and fractions at once
// are refused before anything starts, with the flag named.
func TestBenchTransfers_RefusesBadOpenLoops(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--open-fractions", "0"},
		{"--open-fractions", "0.5,2.5"},
		{"--open-fractions", "0.5,,0.8"},
		{"--open-fractions", "most"},
		{"--open-rate", "-5"},
		{"--open-rate", "5000", "--open-fractions", "0.8"},
		{"--open-warmup", "-1s"},
	} {
		err := benchTransfers(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--open-") {
			t.Errorf("%q: err %v, want one naming the flag", args, err)
		}
	}
}
