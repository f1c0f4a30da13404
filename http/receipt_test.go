package http_test

import (
	"bytes"
	"image"
	"image/png"
	"strings"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/media"
	"github.com/holdfast/holdfast/receipts"
)

// receiptServer is a server with the event log and the receipt pipeline.
type receiptServer struct {
	*TestServer
	receipts *apitest.Receipts
}

func mustReceiptServer(t *testing.T, configure ...func(*receipts.ServiceConfig)) *receiptServer {
	t.Helper()
	db := dbtest.MustOpenDB(t)
	l := apitest.MustEventLog(t, db)
	rc := apitest.MustReceipts(t, db, l, receipts.Config{BackoffBase: 50 * time.Millisecond, MaxDeliveries: 2}, configure...)
	s := apitest.MustServeWith(t, db, func(s *holdfasthttp.Server) { l.Services(s); rc.Services(s) },
		func(c *holdfasthttp.Config) { c.AdminToken = adminToken })
	return &receiptServer{TestServer: &TestServer{Server: s, DB: db}, receipts: rc}
}

// mustTransferID makes a transfer of c's and returns its id.
func mustTransferID(t *testing.T, c *Client) string {
	t.Helper()
	a, b := c.MustAccount(t, "USD", true), c.MustAccount(t, "USD", true)
	return c.Do(t, "POST", "/v1/transfers", Transfer(a, b, 1, "USD")).MustStatus(t, 201).JSON(t)["id"].(string)
}

// pngBomb is a tiny PNG whose header declares w × h pixels.
func pngBomb(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	put := func(at int, v uint32) {
		b[at], b[at+1], b[at+2], b[at+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	put(16, w)
	put(20, h)
	crc := ^uint32(0)
	for _, x := range b[12:29] {
		crc ^= uint32(x)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xedb88320
			} else {
				crc >>= 1
			}
		}
	}
	put(29, ^crc)
	return b
}

func TestReceipts_UploadAndServe(t *testing.T) {
	t.Parallel()
	s := mustReceiptServer(t)
	c, other := s.MustTenant(t), s.MustTenant(t)
	tr := mustTransferID(t, c)
	img := media.Generate(640, 480, 7)

	// Content-Type is not trusted: the bytes are.
	r := c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", img, "Content-Type", "text/plain").MustStatus(t, 202)
	m := r.JSON(t)
	id := m["id"].(string)
	if m["status"] != "queued" || m["format"] != "jpeg" || r.Header.Get("Location") != "/v1/receipts/"+id {
		t.Fatalf("upload: %s %v", r.Body, r.Header)
	}
	eventually(t, "the receipt is ready", func() bool {
		return c.Do(t, "GET", "/v1/receipts/"+id, nil).MustStatus(t, 200).JSON(t)["status"] == "ready"
	})
	got := c.Do(t, "GET", "/v1/receipts/"+id, nil).JSON(t)
	variants := got["variants"].(map[string]any)
	for _, name := range []string{"original", "thumbnail", "medium"} {
		v := variants[name].(map[string]any)
		img := c.Do(t, "GET", v["url"].(string), nil).MustStatus(t, 200)
		if img.Header.Get("Content-Type") != "image/jpeg" || len(img.Body) != int(v["size"].(float64)) || img.Header.Get("ETag") == "" {
			t.Fatalf("%s: %v, %d bytes", name, img.Header, len(img.Body))
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(img.Body))
		if err != nil || cfg.Width != int(v["width"].(float64)) {
			t.Fatalf("%s does not decode to its stated size: %+v %v", name, cfg, err)
		}
		// A conditional request with the ETag is answered 304.
		if r := c.Do(t, "GET", v["url"].(string), nil, "If-None-Match", img.Header.Get("ETag")); r.Status != 304 {
			t.Fatalf("%s with If-None-Match: %d", name, r.Status)
		}
	}
	// The same image again: nothing queued, the receipt as it is.
	if r := c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", img); r.Status != 200 || r.JSON(t)["status"] != "ready" {
		t.Fatalf("same image again: %d %s", r.Status, r.Body)
	}
	// Tenant isolation.
	for _, path := range []string{"/v1/receipts/" + id, "/v1/receipts/" + id + "/original", "/v1/receipts/" + id + "/medium"} {
		if r := other.Do(t, "GET", path, nil); r.Status != 404 {
			t.Fatalf("another tenant GET %s: %d", path, r.Status)
		}
	}
	if r := other.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", img); r.Status != 404 {
		t.Fatalf("another tenant's upload on this transfer: %d", r.Status)
	}
	if r := c.Do(t, "GET", "/v1/receipts/"+id+"/huge", nil); r.Status != 404 {
		t.Fatalf("unknown variant: %d", r.Status)
	}
}

func TestReceipts_RefusedUploads(t *testing.T) {
	t.Parallel()
	s := mustReceiptServer(t)
	c := s.MustTenant(t)
	tr := mustTransferID(t, c)
	huge := make([]byte, 10<<20+1)
	copy(huge, media.Generate(8, 8, 1))
	for _, tc := range []struct {
		name   string
		path   string
		body   []byte
		status int
		typ    string
	}{
		{"bomb", "/v1/transfers/" + tr + "/receipt", pngBomb(t, 100000, 100000), 422, "image-too-large"},
		{"oversized", "/v1/transfers/" + tr + "/receipt", huge, 413, "payload-too-large"},
		{"gif", "/v1/transfers/" + tr + "/receipt", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), 415, "unsupported-media-type"},
		{"empty", "/v1/transfers/" + tr + "/receipt", nil, 415, "unsupported-media-type"},
		{"unknown transfer", "/v1/transfers/0190a8a0-0000-7000-8000-000000000000/receipt", media.Generate(8, 8, 1), 404, "not-found"},
		{"bad transfer id", "/v1/transfers/nope/receipt", media.Generate(8, 8, 1), 404, "not-found"},
	} {
		var body any
		if tc.body != nil {
			body = tc.body
		}
		r := c.Do(t, "PUT", tc.path, body)
		if r.Status != tc.status || !strings.HasSuffix(r.ProblemType(t), tc.typ) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.typ)
		}
	}
	var n int
	if err := s.DB.Pool.QueryRow(t.Context(), "SELECT count(*) FROM receipts").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d receipts stored from refused uploads (%v)", n, err)
	}
}

// An upload past the tenant's quota is a 422 quota-exceeded problem that
// gives the quota and the bytes in use; the quota is each tenant's own.
func TestReceipts_UploadPastQuota(t *testing.T) {
	t.Parallel()
	first, second := media.Generate(320, 240, 21), media.Generate(320, 240, 22)
	quota := len(first) + len(second)/2
	s := mustReceiptServer(t, func(c *receipts.ServiceConfig) { c.Quota = int64(quota) })
	call := loadOpenAPI(t).caller(t)
	c, other := s.MustTenant(t), s.MustTenant(t)
	const put = "/v1/transfers/{id}/receipt"
	call(c, "PUT", put, "/v1/transfers/"+mustTransferID(t, c)+"/receipt", first).MustStatus(t, 202)
	r := call(c, "PUT", put, "/v1/transfers/"+mustTransferID(t, c)+"/receipt", second).MustStatus(t, 422)
	p := r.JSON(t)
	if r.ProblemType(t) != "quota-exceeded" || p["quota_bytes"] != float64(quota) || p["used_bytes"] != float64(len(first)) {
		t.Fatalf("past the quota: %s", r.Body)
	}
	call(other, "PUT", put, "/v1/transfers/"+mustTransferID(t, other)+"/receipt", second).MustStatus(t, 202)
}

// An image that cannot be decoded fails at its first try, with the reason
// on the receipt, and dead-letters; the admin lists and redrives it.
func TestReceipts_DeadLetterAdmin(t *testing.T) {
	t.Parallel()
	s := mustReceiptServer(t)
	c, admin := s.MustTenant(t), s.Admin()
	tr := mustTransferID(t, c)
	good := media.Generate(300, 200, 9)
	poison := good[:len(good)*2/3] // a valid header, then truncated
	id := c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", poison).MustStatus(t, 202).JSON(t)["id"].(string)
	eventually(t, "the receipt fails", func() bool {
		return c.Do(t, "GET", "/v1/receipts/"+id, nil).JSON(t)["status"] == "failed"
	})
	if got := c.Do(t, "GET", "/v1/receipts/"+id, nil).JSON(t); got["attempts"] != 1.0 || !strings.Contains(got["last_error"].(string), "not a readable jpeg") {
		t.Fatalf("failed receipt: %v, want 1 attempt and the reason", got)
	}
	list := admin.Do(t, "GET", "/v1/admin/dead-letters?tenant="+c.Tenant, nil).MustStatus(t, 200).JSON(t)["data"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["receipt_id"] != id {
		t.Fatalf("dead letters: %v", list)
	}
	if l := admin.Do(t, "GET", "/v1/admin/dead-letters?tenant=0190a8a0-0000-7000-8000-000000000000", nil).MustStatus(t, 200).JSON(t)["data"].([]any); len(l) != 0 {
		t.Fatalf("another tenant's dead letters: %v", l)
	}
	if r := c.Do(t, "GET", "/v1/admin/dead-letters", nil); r.Status != 401 {
		t.Fatalf("a tenant listed dead letters: %d", r.Status)
	}
	dl := list[0].(map[string]any)["id"].(string)
	admin.Do(t, "POST", "/v1/admin/dead-letters/"+dl+"/redrive", nil).MustStatus(t, 200)
	admin.Do(t, "POST", "/v1/admin/dead-letters/"+dl+"/redrive", nil).MustStatus(t, 404)
	// Still poison: it fails again and comes back as a new dead letter.
	eventually(t, "the redriven receipt fails again", func() bool {
		l := admin.Do(t, "GET", "/v1/admin/dead-letters?tenant="+c.Tenant, nil).JSON(t)["data"].([]any)
		return len(l) == 1 && l[0].(map[string]any)["id"] != dl
	})
	// A good image for the transfer replaces the poison and is processed.
	c.Do(t, "PUT", "/v1/transfers/"+tr+"/receipt", good).MustStatus(t, 202)
	eventually(t, "the replacement is ready", func() bool {
		return c.Do(t, "GET", "/v1/receipts/"+id, nil).JSON(t)["status"] == "ready"
	})
}

// The receipt routes answer as openapi.json says.
func TestOpenAPIReceiptResponses(t *testing.T) {
	t.Parallel()
	s := mustReceiptServer(t)
	call := loadOpenAPI(t).caller(t)
	c, admin := s.MustTenant(t), s.Admin()
	tr := mustTransferID(t, c)
	img := media.Generate(64, 64, 5)
	const put = "/v1/transfers/{id}/receipt"
	id := call(c, "PUT", put, "/v1/transfers/"+tr+"/receipt", img).MustStatus(t, 202).JSON(t)["id"].(string)
	call(c, "PUT", put, "/v1/transfers/"+tr+"/receipt", pngBomb(t, 50000, 50000)).MustStatus(t, 422)
	call(c, "PUT", put, "/v1/transfers/"+tr+"/receipt", "not an image").MustStatus(t, 415)
	call(c, "PUT", put, "/v1/transfers/0190a8a0-0000-7000-8000-000000000000/receipt", img).MustStatus(t, 404)
	call(&Client{URL: s.URL()}, "PUT", put, "/v1/transfers/"+tr+"/receipt", img).MustStatus(t, 401)
	eventually(t, "ready", func() bool {
		return call(c, "GET", "/v1/receipts/{id}", "/v1/receipts/"+id, nil).MustStatus(t, 200).JSON(t)["status"] == "ready"
	})
	call(c, "PUT", put, "/v1/transfers/"+tr+"/receipt", img).MustStatus(t, 200)
	call(c, "GET", "/v1/receipts/{id}", "/v1/receipts/nope", nil).MustStatus(t, 404)
	v := call(c, "GET", "/v1/receipts/{id}/{variant}", "/v1/receipts/"+id+"/thumbnail", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/receipts/{id}/{variant}", "/v1/receipts/"+id+"/thumbnail", nil, "If-None-Match", v.Header.Get("ETag")).MustStatus(t, 304)
	call(c, "GET", "/v1/receipts/{id}/{variant}", "/v1/receipts/"+id+"/thumbnail", nil, "Range", "bytes=0-9").MustStatus(t, 206)
	call(c, "GET", "/v1/receipts/{id}/{variant}", "/v1/receipts/"+id+"/poster", nil).MustStatus(t, 404)
	call(admin, "GET", "/v1/admin/dead-letters", "/v1/admin/dead-letters", nil).MustStatus(t, 200)
	call(admin, "GET", "/v1/admin/dead-letters", "/v1/admin/dead-letters?tenant=x", nil).MustStatus(t, 400)
	call(admin, "POST", "/v1/admin/dead-letters/{id}/redrive", "/v1/admin/dead-letters/0190a8a0-0000-7000-8000-000000000000/redrive", nil).MustStatus(t, 404)
}
