package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
)

const (
	csvRoute    = "/v1/accounts/{id}/transactions.csv"
	ndjsonRoute = "/v1/accounts/{id}/transactions.ndjson"
	csvHeader   = "entry_id,transfer_id,time,direction,amount,currency,counterparty_account_id,description,running_balance\n"
)

// exportCase is a transfer of the byte-exact test and what the exported
// account's row must show.
type exportCase struct {
	credit      bool // the exported account is credited (else debited)
	amount      int64
	description string
	cell        string // the description cell as CSV writes it
	balance     string
}

var exportCases = []exportCase{
	{true, 1500, "plain", "plain", "1500"},
	{false, 2000, `a, "quoted" b`, `"a, ""quoted"" b"`, "-500"},
	{true, 7, "line1\nline2", "\"line1\nline2\"", "-493"},
	{true, 1, `=HYPERLINK("http://x")`, `"'=HYPERLINK(""http://x"")"`, "-492"},
	{false, 8, "+1", "'+1", "-500"},
	{true, 1000, "-2", "'-2", "500"},
	{true, 1, "@SUM(A1)", "'@SUM(A1)", "501"},
	{true, 1, "\tcmd", "'\tcmd", "502"},
	{true, 1, "café ☕ 日本", "café ☕ 日本", "503"},
	{true, 1, "", "", "504"},
}

// exportFixture makes an overdraft account whose entries are exportCases,
// against a counterparty, and returns the tenant's client, the account, the
// expected CSV rows (without header) and the entry ids, in order.
func exportFixture(t *testing.T, s *TestServer) (c *Client, account string, rows []string, ids []int64) {
	t.Helper()
	c = s.MustTenant(t)
	account = c.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD", "allow_overdraft": true}).MustStatus(t, 201).JSON(t)["id"].(string)
	other := c.MustAccount(t, "USD", true)
	for _, tc := range exportCases {
		from, to := account, other
		if tc.credit {
			from, to = other, account
		}
		body := Transfer(from, to, tc.amount, "USD")
		body["description"] = tc.description
		tr := c.Do(t, "POST", "/v1/transfers", body).MustStatus(t, 201).JSON(t)
		at, err := time.Parse(time.RFC3339Nano, tr["created_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		dir := map[bool]string{true: "credit", false: "debit"}[tc.credit]
		rows = append(rows, fmt.Sprintf("%%d,%s,%s,%s,%d,USD,%s,%s,%s\n",
			tr["id"], at.UTC().Format("2006-01-02T15:04:05.000000Z"), dir, tc.amount, other, tc.cell, tc.balance))
	}
	pgRows, err := s.DB.Pool.Query(context.Background(), "SELECT id FROM entries WHERE account_id = $1 ORDER BY id", account)
	if err != nil {
		t.Fatal(err)
	}
	for pgRows.Next() {
		var id int64
		if err := pgRows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if pgRows.Err() != nil || len(ids) != len(rows) {
		t.Fatalf("entries: %v, %d ids for %d rows", pgRows.Err(), len(ids), len(rows))
	}
	for i := range rows {
		rows[i] = fmt.Sprintf(rows[i], ids[i])
	}
	return c, account, rows, ids
}

func TestExportCSV(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	spec := loadOpenAPI(t)
	c, account, rows, ids := exportFixture(t, s)
	path := "/v1/accounts/" + account + "/transactions.csv"

	r := c.Do(t, "GET", path, nil).MustStatus(t, 200)
	spec.checkResponse(t, "GET", csvRoute, r)
	if want := csvHeader + strings.Join(rows, ""); string(r.Body) != want {
		t.Fatalf("CSV:\n%s\nwant:\n%s", r.Body, want)
	}
	if ct, cd := r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"); ct != "text/csv; charset=utf-8" ||
		cd != `attachment; filename="`+account+`-transactions.csv"` {
		t.Fatalf("Content-Type %q, Content-Disposition %q", ct, cd)
	}

	// Resuming after row k is a complete file again: the header row, then
	// exactly the bytes of the full export that follow row k.
	for _, k := range []int{0, 3, len(ids) - 1} {
		resumed := c.Do(t, "GET", fmt.Sprintf("%s?after=%d", path, ids[k]), nil).MustStatus(t, 200)
		rest, ok := strings.CutPrefix(string(resumed.Body), csvHeader)
		if !ok || !strings.HasSuffix(string(r.Body), rest) ||
			string(r.Body)[:len(r.Body)-len(rest)] != csvHeader+strings.Join(rows[:k+1], "") {
			t.Fatalf("after row %d:\n%s\nis not the rest of\n%s", k, resumed.Body, r.Body)
		}
	}

	// from is inclusive and to exclusive, on the entry's time.
	records, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	from, to := records[3][2], records[5][2] // rows 2..3 (0-based), unless times tie
	got := c.Do(t, "GET", path+"?from="+from+"&to="+to, nil).MustStatus(t, 200)
	want, err := csv.NewReader(bytes.NewReader(got.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range want[1:] {
		if rec[2] < from || rec[2] >= to {
			t.Fatalf("from=%s to=%s exported a row at %s", from, to, rec[2])
		}
	}
	n := 0
	for _, rec := range records[1:] {
		if rec[2] >= from && rec[2] < to {
			n++
		}
	}
	if len(want)-1 != n || n == 0 {
		t.Fatalf("from=%s to=%s: %d rows, want %d", from, to, len(want)-1, n)
	}

	// An account without entries exports the header row alone.
	empty := c.MustAccount(t, "USD", false)
	if r := c.Do(t, "GET", "/v1/accounts/"+empty+"/transactions.csv", nil).MustStatus(t, 200); string(r.Body) != csvHeader {
		t.Fatalf("empty export: %q", r.Body)
	}

	// Bad parameters and other tenants' accounts are refused before a byte is streamed.
	for _, q := range []string{"?from=yesterday", "?to=2026-13-01T00:00:00Z", "?after=x", "?after=-1"} {
		r := c.Do(t, "GET", path+q, nil).MustStatus(t, 400)
		spec.checkResponse(t, "GET", csvRoute, r)
	}
	intruder := s.MustTenant(t)
	for _, p := range []string{path, "/v1/accounts/" + account + "/transactions.ndjson", "/v1/accounts/not-a-uuid/transactions.csv"} {
		r := intruder.Do(t, "GET", p, nil).MustStatus(t, 404)
		if r.ProblemType(t) != "not-found" {
			t.Fatalf("%s: %s", p, r.Body)
		}
		spec.checkResponse(t, "GET", csvRoute, r)
	}
}

func TestExportNDJSON(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c, account, rows, ids := exportFixture(t, s)
	r := c.Do(t, "GET", "/v1/accounts/"+account+"/transactions.ndjson", nil).MustStatus(t, 200)
	loadOpenAPI(t).checkResponse(t, "GET", ndjsonRoute, r)
	if ct, cd := r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"); ct != "application/x-ndjson" ||
		cd != `attachment; filename="`+account+`-transactions.ndjson"` {
		t.Fatalf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(rows), r.Body)
	}
	records, err := csv.NewReader(strings.NewReader(csvHeader + strings.Join(rows, ""))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range lines {
		var got map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		rec, tc := records[i+1], exportCases[i]
		want := map[string]any{"entry_id": json.Number(fmt.Sprint(ids[i])), "transfer_id": rec[1], "time": rec[2],
			"direction": rec[3], "amount": json.Number(rec[4]), "currency": "USD", "counterparty_account_id": rec[6],
			"description": tc.description, "running_balance": json.Number(tc.balance)}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("line %d: %v\nwant %v", i, got, want)
		}
	}
}

// seedEntries credits account with n entries of 1, each with its transfer,
// straight in SQL (the API would take minutes). Only the exported account's
// side is written: the export reads nothing else.
func seedEntries(t *testing.T, db *postgres.DB, tenant, account, other string, n int) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `WITH t AS (
		INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, amount, currency, description, created_at)
		SELECT $1, gen_random_uuid(), $3, $2, 1, 'USD', 'seeded transfer number ' || g, now()
		FROM generate_series(1, $4::int) g
		RETURNING id, created_at)
	INSERT INTO entries (account_id, transfer_id, amount, balance_after, created_at)
	SELECT $2, id, 1, 1, created_at FROM t`, tenant, account, other, n)
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond, without asserting any wall-clock time: the bound
// only keeps a broken build from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}

// metricValue sums a metric family of reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

// stalledExport opens an export over a raw TCP connection with a small
// receive buffer, reads the response head and then reads nothing more.
func stalledExport(t *testing.T, s *TestServer, c *Client, account string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /v1/accounts/%s/transactions.csv HTTP/1.1\r\nHost: holdfast\r\nAuthorization: Bearer %s\r\n\r\n", account, c.Key)
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("stalled export: status %d", resp.StatusCode)
	}
	return conn
}

// TestExportLarge checks what a big export does to its resources: a client
// that stalls or goes away is cut off, and its slot and database connection
// are released; the slot caps answer 429 at once.
func TestExportLarge(t *testing.T) {
	t.Parallel()
	const n = 200_000 // about 30 MB of CSV: more than the socket buffers hold
	reg := prometheus.NewRegistry()
	s := MustOpenServer(t, func(c *holdfasthttp.Config) {
		c.ExportStallTimeout = 200 * time.Millisecond
		c.ExportSlotsPerTenant = 1
		c.Registerer, c.Gatherer = reg, reg
	})
	exports := s.ExportService.(*postgres.ExportService)
	c := s.MustTenant(t)
	account := c.MustAccount(t, "USD", false)
	seedEntries(t, s.DB, c.Tenant, account, c.MustAccount(t, "USD", true), n)
	var last int64
	if err := s.DB.Pool.QueryRow(context.Background(), "SELECT max(id) FROM entries WHERE account_id = $1", account).Scan(&last); err != nil {
		t.Fatal(err)
	}
	tail := fmt.Sprintf("/v1/accounts/%s/transactions.csv?after=%d", account, last-10)
	released := func() bool {
		return exports.Stat().AcquiredConns() == 0 && metricValue(t, reg, "holdfast_exports_active") == 0
	}

	t.Run("stall", func(t *testing.T) {
		stalledExport(t, s, c, account)
		eventually(t, "the stalled export is cut off", func() bool {
			return metricValue(t, reg, "holdfast_export_cutoffs_total") >= 1 && released()
		})
		if r := c.Do(t, "GET", tail, nil).MustStatus(t, 200); bytes.Count(r.Body, []byte("\n")) != 11 {
			t.Fatalf("export after the cut-off: %s", r.Body)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/v1/accounts/"+account+"/transactions.csv", nil)
		req.Header.Set("Authorization", "Bearer "+c.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
		eventually(t, "the abandoned export is cut off and releases its slot and connection", func() bool {
			return metricValue(t, reg, "holdfast_export_cutoffs_total") >= 2 && released()
		})
		eventually(t, "a new export of the tenant runs", func() bool {
			r := c.Do(t, "GET", tail, nil)
			return r.Status == 200 && bytes.Count(r.Body, []byte("\n")) == 11
		})
	})

	t.Run("no deadline", func(t *testing.T) {
		// An export outlives the request and read timeouts: a client that
		// pauses for longer than both still gets the whole file.
		s4 := MustOpenServerOn(t, s.DB, func(c *holdfasthttp.Config) {
			c.RequestTimeout, c.ReadTimeout = 100*time.Millisecond, 100*time.Millisecond
		})
		req, _ := http.NewRequest("GET", s4.URL()+"/v1/accounts/"+account+"/transactions.csv", nil)
		req.Header.Set("Authorization", "Bearer "+c.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		head := make([]byte, 64<<10)
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		rest, err := io.ReadAll(resp.Body)
		if lines := bytes.Count(head, []byte("\n")) + bytes.Count(rest, []byte("\n")); err != nil || lines != n+1 {
			t.Fatalf("%d lines, want %d: %v", lines, n+1, err)
		}
	})

	t.Run("caps", func(t *testing.T) {
		// More servers on the same database, whose stall timeout is long
		// enough for a stalled export to hold its slot for the whole test.
		s2 := MustOpenServerOn(t, s.DB, func(c *holdfasthttp.Config) { c.ExportSlots, c.ExportSlotsPerTenant = 2, 1 })
		c2 := &Client{URL: s2.URL(), Key: c.Key, Tenant: c.Tenant}
		conn := stalledExport(t, s2, c2, account)
		spec := loadOpenAPI(t)
		mustLimit := func(c *Client) {
			t.Helper()
			r := c.Do(t, "GET", tail, nil).MustStatus(t, 429)
			if r.ProblemType(t) != "rate-limited" || r.Header.Get("Retry-After") == "" {
				t.Fatalf("429: %v %s", r.Header, r.Body)
			}
			spec.checkResponse(t, "GET", csvRoute, r)
		}
		mustLimit(c2) // the tenant's cap
		// Another tenant has slots of its own, up to the process's cap.
		other := s2.MustTenant(t)
		otherTail := "/v1/accounts/" + other.MustAccount(t, "USD", false) + "/transactions.csv"
		other.Do(t, "GET", otherTail, nil).MustStatus(t, 200)

		s3 := MustOpenServerOn(t, s.DB, func(c *holdfasthttp.Config) { c.ExportSlots = 1 })
		stalledExport(t, s3, &Client{URL: s3.URL(), Key: c.Key}, account)
		other3 := &Client{URL: s3.URL(), Key: other.Key}
		if r := other3.Do(t, "GET", otherTail, nil).MustStatus(t, 429); r.ProblemType(t) != "rate-limited" {
			t.Fatalf("process cap: %s", r.Body)
		}

		conn.Close()
		eventually(t, "the closed export releases its slot", func() bool {
			return c2.Do(t, "GET", tail, nil).Status == 200
		})
	})
}
