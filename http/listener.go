package http

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/holdfast/holdfast"
)

// net/http answers a request it cannot parse (a control character in a
// header value, a header too large, an unknown transfer coding) before any
// handler runs, by writing a plain-text response straight to the
// connection, in one Write:
//
//	HTTP/1.1 <status line>\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n<text>
//
// problemListener's connections recognise exactly that write and send a
// problem document in its place. A write is only taken for it when no
// handler has started on the connection since it was new or last idle: the
// server finishes writing a response before it reads the next request, so
// such a write cannot be part of one. (A response of ours could not match
// anyway: net/http writes Date and sorts the header, Connection first.)
const serverErrorHeader = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// unparsedCodes gives the problem code of each status net/http refuses
// with, and the detail when its own text says nothing more.
var unparsedCodes = map[int]struct{ code, detail string }{
	http.StatusBadRequest:                  {holdfast.EINVALID, "the request could not be parsed (a header line, name or value is malformed)"},
	http.StatusRequestHeaderFieldsTooLarge: {EHEADERSTOOLARGE, "the request's header is larger than the server accepts (" + strconv.Itoa(maxHeaderBytes>>10) + " KiB)"},
	http.StatusNotImplemented:              {ETRANSFERENCODING, "the request's Transfer-Encoding is not supported"},
	http.StatusHTTPVersionNotSupported:     {EHTTPVERSION, "the request's HTTP version is not supported"},
}

// problemListener hands out problemConns, so that what net/http refuses
// by itself is answered with problems too.
type problemListener struct {
	net.Listener
	s *Server
}

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c, s: l.s}, nil
}

// problemConn rewrites net/http's own plain-text refusals (see
// serverErrorHeader).
type problemConn struct {
	net.Conn
	s *Server
	// handling: a handler has started since the connection was new or idle.
	handling atomic.Bool

	mu   sync.Mutex
	head []byte // what was read of the next request, up to its first line: for the problem's instance
}

// maxHead bounds what a connection keeps of a request's first line.
const maxHead = 2048

func (c *problemConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.handling.Load() {
		c.mu.Lock()
		if !bytes.Contains(c.head, []byte("\n")) {
			c.head = append(c.head, b[:min(n, maxHead-len(c.head))]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// path returns the path of the request being read, "" if its first line
// is not (or not yet) a request line.
func (c *problemConn) path() string {
	c.mu.Lock()
	line, _, complete := strings.Cut(string(c.head), "\n")
	c.mu.Unlock()
	_, rest, ok := strings.Cut(line, " ")
	target, _, ok2 := strings.Cut(rest, " ")
	if !complete || !ok || !ok2 {
		return ""
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return ""
	}
	return u.Path
}

func (c *problemConn) Write(b []byte) (int, error) {
	if !c.handling.Load() {
		if resp, ok := c.s.unparsedProblem(b, c.path()); ok {
			if _, err := c.Conn.Write(resp); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

type connKey struct{}

// connContext puts the connection in its requests' context, for markHandling.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*problemConn); ok {
		return context.WithValue(ctx, connKey{}, pc)
	}
	return ctx
}

// connState notes that a connection is between requests.
func connState(c net.Conn, state http.ConnState) {
	if pc, ok := c.(*problemConn); ok && state == http.StateIdle {
		pc.mu.Lock()
		pc.head = nil // an idle connection keeps nothing
		pc.mu.Unlock()
		pc.handling.Store(false)
	}
}

// markHandling notes on the connection that a handler has started.
func markHandling(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pc, ok := r.Context().Value(connKey{}).(*problemConn); ok {
			pc.handling.Store(true)
		}
		next.ServeHTTP(w, r)
	})
}

// unparsedProblem returns the problem response that replaces b, if b is
// net/http's own refusal of a request it could not parse; path is the
// request's, if its request line could be read.
func (s *Server) unparsedProblem(b []byte, path string) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	end := bytes.Index(b, []byte(serverErrorHeader))
	if !bytes.HasPrefix(b, []byte(proto)) || end < len(proto)+3 {
		return nil, false
	}
	line := string(b[len(proto):end]) // "400 Bad Request: invalid header value"
	status, err := strconv.Atoi(line[:3])
	u, known := unparsedCodes[status]
	if err != nil || !known {
		return nil, false
	}
	detail := u.detail
	if _, reason, ok := strings.Cut(line, ": "); ok {
		// net/http's own reason ("invalid header value", "missing required
		// Host header"), never the client's bytes.
		detail = "the request could not be parsed: " + reason
	}
	p := problems[u.code]
	var id [12]byte
	rand.Read(id[:])
	requestID := hex.EncodeToString(id[:])
	body, _ := json.Marshal(map[string]any{
		"type": ProblemBase + u.code, "title": p.title, "status": p.status, "detail": detail,
		"instance": path, "request_id": requestID})
	body = append(body, '\n')
	s.logger.Debug("unparsed request", "status", status, "detail", detail, "request_id", requestID)
	var resp bytes.Buffer
	resp.WriteString(proto + strconv.Itoa(p.status) + " " + http.StatusText(p.status) + "\r\n")
	resp.WriteString("Content-Type: application/problem+json\r\n")
	resp.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	resp.WriteString("X-Request-Id: " + requestID + "\r\n")
	resp.WriteString("Connection: close\r\n\r\n")
	resp.Write(body)
	return resp.Bytes(), true
}
