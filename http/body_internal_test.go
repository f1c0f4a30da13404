package http

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
)

// readBody reads a body of the declared length into a buffer of that size,
// and still refuses a body shorter than declared, one past the server's cap,
// and reads a body declared too large to allocate for as it comes.
func TestReadBody(t *testing.T) {
	body := `{"amount":100}`
	cases := []struct {
		name     string
		declared int64
		limit    int64
		want     string
		code     string
	}{
		{"declared", int64(len(body)), 1 << 20, body, ""},
		{"undeclared", -1, 1 << 20, body, ""},
		{"shorter than declared", int64(len(body)) + 5, 1 << 20, "", holdfast.EINVALID},
		{"past the cap", int64(len(body)), 4, "", ETOOLARGE},
		// net/http's own body enforces a declared length; this one does not.
		{"declared past what is allocated up front", maxDeclaredBody + 1, 1 << 20, body, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/transfers", strings.NewReader(body))
			r.ContentLength = c.declared
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, c.limit)
			got, err := readBody(r)
			var e *holdfast.Error
			switch {
			case c.code == "" && err != nil:
				t.Fatalf("error %v, want the body", err)
			case c.code == "" && string(got) != c.want:
				t.Fatalf("read %q, want %q", got, c.want)
			case c.code != "" && (!errors.As(err, &e) || e.Code != c.code):
				t.Fatalf("read %q, error %v: want %s", got, err, c.code)
			}
		})
	}
}
