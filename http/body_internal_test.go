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

// canonicalJSON removes whitespace and orders members, keeps every number
// as written (no float64 rounding), and leaves what is not valid JSON alone.
func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{ "b" : 1 ,"a":[ 2, {"d":"x","c":null} ] }`, `{"a":[2,{"c":null,"d":"x"}],"b":1}`},
		{`{"s":"caf\u00e9 \/"}`, `{"s":"café /"}`},
		{`{"n":9007199254740993}`, `{"n":9007199254740993}`},
		{`{"n":7.0}`, `{"n":7.0}`},
		{`{"a":1,"a":2}`, `{"a":1,"a":2}`},
		{`not json`, `not json`},
	} {
		if got := string(canonicalJSON([]byte(tc.in))); got != tc.want {
			t.Errorf("canonicalJSON(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if string(canonicalJSON([]byte(`{"n":9007199254740993}`))) == string(canonicalJSON([]byte(`{"n":9007199254740992}`))) {
		t.Error("two integers beyond 2^53 have one canonical form")
	}
}
