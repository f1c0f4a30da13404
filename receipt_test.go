package holdfast_test

import (
	"testing"

	"github.com/holdfast/holdfast"
)

func TestCheckReceiptQuota(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                        string
		used, replaced, size, quota int64
		refused                     bool
	}{
		{"a first image within the quota", 0, 0, 100, 1000, false},
		{"an image that reaches the quota exactly", 900, 0, 100, 1000, false},
		{"an image one byte past the quota", 901, 0, 100, 1000, true},
		{"an image larger than the whole quota", 0, 0, 1001, 1000, true},
		{"a larger replacement that fits", 1000, 100, 100, 1000, false},
		{"a larger replacement past the quota", 1000, 100, 101, 1000, true},
		{"a smaller replacement over a lowered quota", 5000, 300, 200, 1000, false},
		{"the same size again over a lowered quota", 5000, 300, 300, 1000, false},
		{"a new image over a lowered quota", 5000, 0, 1, 1000, true},
		{"no quota", 1 << 50, 0, 10 << 20, -1, false},
		{"a quota of zero refuses any new bytes", 0, 0, 1, 0, true},
	} {
		err := holdfast.CheckReceiptQuota(tc.used, tc.replaced, tc.size, tc.quota)
		if tc.refused != holdfast.IsCode(err, holdfast.EQUOTA) || !tc.refused && err != nil {
			t.Errorf("%s: %v, want refused %v", tc.name, err, tc.refused)
		}
	}
}
