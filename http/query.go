package http

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/holdfast/holdfast"
)

// knownQuery refuses, with 400 and before anything else, a request whose
// query string does not parse, names a parameter other than the route's
// params, or names one twice: as with an unknown JSON member, a misspelt
// ?limt=10 or a stray ?limit= on an export would otherwise be ignored and
// its caller never learn. The handler checks the values.
func (s *Server) knownQuery(h http.Handler, params []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if err := checkQuery(r.URL.RawQuery, params); err != nil {
				s.Error(w, r, err)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// checkQuery returns EINVALID unless the query string parses and names
// each parameter it has once, and only the ones in params.
func checkQuery(raw string, params []string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return holdfast.Errorf(holdfast.EINVALID, "the query string is malformed")
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // name the same parameter every time
	for _, name := range names {
		if !slices.Contains(params, name) && !wildcard(params, name) {
			takes := "takes no query parameters"
			if len(params) > 0 {
				takes = "takes only " + strings.Join(params, ", ")
			}
			return holdfast.Errorf(holdfast.EINVALID, "unknown query parameter %q: this route %s", truncate(name, 64), takes)
		}
		if len(q[name]) > 1 {
			return holdfast.Errorf(holdfast.EINVALID, "query parameter %s is given more than once", name)
		}
	}
	return nil
}

// truncate returns s cut to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// wildcard reports whether name matches a parameter of params written
// prefix[*] (such as metadata[*] for metadata[order]).
func wildcard(params []string, name string) bool {
	for _, p := range params {
		if prefix, ok := strings.CutSuffix(p, "[*]"); ok && len(name) > len(prefix)+2 &&
			strings.HasPrefix(name, prefix+"[") && strings.HasSuffix(name, "]") {
			return true
		}
	}
	return false
}
