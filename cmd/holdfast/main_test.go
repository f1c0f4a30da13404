package main_test

import (
	"testing"

	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
