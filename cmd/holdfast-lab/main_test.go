package main

import (
	"testing"

	"github.com/holdfast/holdfast/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
