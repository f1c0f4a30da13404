package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Poster is the benchmarks' load generator: it POSTs over a pool of
// persistent HTTP/1.1 connections, one request at a time on each, writing
// the request from a template and reading only the status line, the
// framing headers and the body's length. The generator shares the machine
// with the server and the database, and net/http's client (a reader and a
// writer goroutine per connection, header maps, a connection pool) spent a
// fifth of the cores in `holdfast-lab bench transfers`; every CPU second it
// saves goes to the systems measured, Holdfast and the baselines alike.
//
// Only what the benchmarks need: POST, a Content-Length body, responses
// framed by Content-Length or chunked encoding. A request that fails on a
// reused connection before any byte of the answer came back is sent once
// more on a new connection (the server closed it while idle; every
// benchmark request carries an Idempotency-Key, so a repeat is safe).
type Poster struct {
	addr, host string
	timeout    time.Duration
	slots      chan struct{} // one per connection open or in use: at most maxConns
	idle       chan *posterConn
}

type posterConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// NewPoster returns a Poster for the http:// base URL that opens at most
// maxConns connections (a request beyond them waits for one, as with
// net/http's MaxConnsPerHost) and gives each request at most timeout (0: no
// limit but the context's).
func NewPoster(base string, maxConns int, timeout time.Duration) (*Poster, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("load: poster needs an http:// URL, got %q", base)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	maxConns = max(1, maxConns)
	return &Poster{addr: addr, host: u.Host, timeout: timeout, slots: make(chan struct{}, maxConns), idle: make(chan *posterConn, maxConns)}, nil
}

// Close closes the idle connections.
func (p *Poster) Close() {
	for {
		select {
		case c := <-p.idle:
			c.c.Close()
			<-p.slots
		default:
			return
		}
	}
}

// Post sends body to path with the given header lines (each "Name: value\r\n")
// and returns the response's status code; the response body is read and
// discarded.
func (p *Poster) Post(ctx context.Context, path string, header, body []byte) (int, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.conn(ctx, attempt > 0)
		if err != nil {
			return 0, err
		}
		status, answered, err := p.roundTrip(ctx, c, path, header, body)
		if err == nil {
			p.idle <- c // never blocks: a connection holds a slot
			return status, nil
		}
		c.c.Close()
		<-p.slots
		if sc, ok := err.(errServerClosed); ok {
			return sc.status, nil
		}
		if !reused || answered || attempt > 0 || ctx.Err() != nil {
			return 0, err
		}
	}
}

// conn returns an idle connection, or a new one if fewer than maxConns are
// open, or waits for one to come back. With fresh, it returns a new one (if
// the server closed one idle connection, it likely closed them all).
func (p *Poster) conn(ctx context.Context, fresh bool) (*posterConn, bool, error) {
	if !fresh {
		select {
		case c := <-p.idle:
			return c, true, nil
		default:
		}
	}
	select {
	case c := <-p.idle:
		if !fresh {
			return c, true, nil
		}
		c.c.Close() // its slot is the new connection's
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		<-p.slots
		return nil, false, err
	}
	return &posterConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

// roundTrip writes one request and reads its response; answered says
// whether any byte of the response arrived.
func (p *Poster) roundTrip(ctx context.Context, c *posterConn, path string, header, body []byte) (status int, answered bool, err error) {
	deadline, ok := ctx.Deadline()
	if p.timeout > 0 {
		if t := time.Now().Add(p.timeout); !ok || t.Before(deadline) {
			deadline, ok = t, true
		}
	}
	if ok {
		c.c.SetDeadline(deadline)
	} else {
		c.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	w := c.bw
	w.WriteString("POST ")
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(p.host)
	w.WriteString("\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	w.WriteString("\r\n")
	w.Write(header)
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, false, err
	}

	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, len(line) > 0, err
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, true, fmt.Errorf("load: bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, true, fmt.Errorf("load: bad status line %q", line)
	}
	length, chunked, closing := -1, false, false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, true, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, true, fmt.Errorf("load: bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			closing = asciiEqualFold(value, "close")
		}
	}
	switch {
	case chunked:
		err = discardChunked(c.br)
	case length >= 0:
		_, err = c.br.Discard(length)
	default:
		return 0, true, errors.New("load: response without a length")
	}
	if err != nil {
		return 0, true, err
	}
	if closing {
		return status, true, errServerClosed{status}
	}
	return status, true, nil
}

// errServerClosed: the response is complete but the server closes the
// connection; Post drops the connection and still reports the status.
type errServerClosed struct{ status int }

func (e errServerClosed) Error() string { return "server closed the connection" }

func discardChunked(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("load: bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the blank line
				line, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := r.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
