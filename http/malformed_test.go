package http_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawResponse is what came back on a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	close  bool // Connection: close (which ReadResponse takes out of the header)
}

// readRaw reads one response from br.
func readRaw(tb testing.TB, br *bufio.Reader) rawResponse {
	tb.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body: %v", err)
	}
	return rawResponse{resp.StatusCode, resp.Header, b, resp.Close}
}

// mustRawProblem fails tb unless r is a problem document with the status,
// type and instance.
func mustRawProblem(tb testing.TB, r rawResponse, status int, typ, instance string) {
	tb.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		tb.Fatalf("status %d, Content-Type %q, want %d application/problem+json: %q", r.status, r.header.Get("Content-Type"), status, r.body)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		tb.Fatalf("problem is not JSON: %v: %q", err, r.body)
	}
	if doc["type"] != "https://holdfast.dev/problems/"+typ || doc["status"] != float64(status) || doc["title"] == "" || doc["detail"] == "" {
		tb.Fatalf("problem %v, want type %s and status %d", doc, typ, status)
	}
	if doc["instance"] != instance {
		tb.Fatalf("problem instance %v, want %q", doc["instance"], instance)
	}
	if id := r.header.Get("X-Request-Id"); id == "" || doc["request_id"] != id {
		tb.Fatalf("X-Request-Id %q and request_id %v: want the same id in both", id, doc["request_id"])
	}
}

// dial opens a raw connection to the server.
func dial(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hung server fails the test instead of hanging it
	return conn
}

// TestMalformedHeaders_AreProblems: a request net/http itself refuses
// before any handler (a control character in a header value, a bad header
// name, no Host, a header too large, an unknown transfer coding or HTTP
// version) is answered with a problem document with a stable type, not Go's
// plain text.
func TestMalformedHeaders_AreProblems(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	tests := []struct {
		name, request string
		status        int
		typ           string
	}{
		{"\\x01 in Idempotency-Key", "POST /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + c.Key + "\r\nIdempotency-Key: a\x01b\r\nContent-Length: 2\r\n\r\n{}", 400, invalid},
		{"\\x7f in Idempotency-Key", "POST /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + c.Key + "\r\nIdempotency-Key: a\x7fb\r\nContent-Length: 2\r\n\r\n{}", 400, invalid},
		{"\\x00 in Idempotency-Key", "POST /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + c.Key + "\r\nIdempotency-Key: a\x00b\r\nContent-Length: 2\r\n\r\n{}", 400, invalid},
		{"\\x01 in Authorization", "GET /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer \x01" + c.Key + "\r\n\r\n", 400, invalid},
		{"\\x7f in Authorization", "GET /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + c.Key + "\x7f\r\n\r\n", 400, invalid},
		{"\\x1b in Authorization", "GET /v1/accounts HTTP/1.1\r\nHost: h\r\nAuthorization: \x1b[31mBearer\r\n\r\n", 400, invalid},
		{"bad header name", "GET /v1/accounts HTTP/1.1\r\nHost: h\r\nBad(Name): x\r\n\r\n", 400, invalid},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, invalid},
		{"malformed header line", "GET /healthz HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n", 400, invalid},
		{"header too large", "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 200<<10) + "\r\n\r\n", 431, "headers-too-large"},
		{"unknown transfer coding", "POST /v1/accounts HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: rot13\r\n\r\n", 501, "unsupported-transfer-encoding"},
		{"unknown HTTP version", "GET /healthz HTTP/3.0\r\nHost: h\r\n\r\n", 505, "unsupported-http-version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dial(t, s.Addr())
			// Written beside the read: a server refusing a large header stops
			// reading it.
			go io.WriteString(conn, tt.request)
			r := readRaw(t, bufio.NewReader(conn))
			mustRawProblem(t, r, tt.status, tt.typ, strings.Fields(tt.request)[1])
			if !r.close {
				t.Error("no Connection: close")
			}
		})
	}
	if n := countAccounts(t, s, c.Tenant); n != 0 {
		t.Fatalf("%d accounts after malformed requests, want 0", n)
	}
}

// TestMalformedHeaders_AfterAServedRequest: on a keep-alive connection, a
// malformed request after a served one is answered with a problem too,
// and the served response came through untouched.
func TestMalformedHeaders_AfterAServedRequest(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	conn := dial(t, s.Addr())
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
	if r := readRaw(t, br); r.status != 200 || string(r.body) != `{"status":"ok"}`+"\n" {
		t.Fatalf("healthz: %d %q", r.status, r.body)
	}
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: h\r\nIdempotency-Key: \x01\r\n\r\n")
	mustRawProblem(t, readRaw(t, br), 400, invalid, "/healthz")
}
