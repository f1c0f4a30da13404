package http

import (
	"net/http"
	"testing"

	"github.com/holdfast/holdfast"
)

// The errors an Idempotency-Key stores (holdfast.IsFinal) are those it
// stored when the rule was read from the response: a 404, a 422, or the
// 409 of a client id reused for another transfer; and the 409s of a hold
// that cannot be resolved (posted, voided, expired, or no hold), which a
// retry would only get again.
func TestIsFinal_MatchesTheStatusesStoredForReplay(t *testing.T) {
	t.Parallel()
	for code, p := range problems {
		want := p.status == http.StatusNotFound || p.status == http.StatusUnprocessableEntity || code == holdfast.ETRANSFEREXISTS ||
			code == holdfast.EALREADYPOSTED || code == holdfast.EALREADYVOIDED || code == holdfast.EEXPIRED || code == holdfast.ENOTPENDING
		if got := holdfast.IsFinal(holdfast.Errorf(code, "x")); got != want {
			t.Errorf("IsFinal(%s) = %v; its status is %d", code, got, p.status)
		}
	}
}
