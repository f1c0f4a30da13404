package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/holdfast/holdfast"
)

// readBody reads the request body, which the server has already capped with
// http.MaxBytesReader. Returns ETOOLARGE past the cap.
func readBody(r *http.Request) ([]byte, error) {
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= maxDeclaredBody {
		// Read into a buffer of the declared size, not io.ReadAll's 512
		// bytes grown by doubling; one byte more tells a body longer than
		// declared (net/http fails that read) from one that fits.
		b = make([]byte, n+1)
		var k int
		k, err = io.ReadFull(r.Body, b)
		if int64(k) == n && errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil // all of the declared body; a shorter one keeps its error
		}
		b = b[:k]
	} else {
		b, err = io.ReadAll(r.Body)
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, holdfast.Errorf(ETOOLARGE, "the request body is larger than %d bytes", tooLarge.Limit)
	}
	if err != nil {
		return nil, holdfast.Errorf(holdfast.EINVALID, "the request body could not be read")
	}
	return b, nil
}

// maxDeclaredBody is the largest declared Content-Length readBody allocates
// for up front (a transfer's body is a few hundred bytes), so that a client
// declaring a large body and sending little holds no more than this; the
// body's own limit (http.MaxBytesReader) still applies.
const maxDeclaredBody = 16 << 10

// decode reads a JSON request body strictly into v: JSON content type, valid
// UTF-8, exactly one value, member names matched exactly (case-sensitive),
// no unknown and no duplicate members. Lenient decoding would let
// {"amount":1,"AMOUNT":100} mean one thing to a gateway that logs it and
// another to the ledger.
func decode(r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return holdfast.Errorf(EMEDIATYPE, "the request body must be application/json")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if !utf8.Valid(body) {
		return holdfast.Errorf(holdfast.EINVALID, "the request body is not valid UTF-8")
	}
	if err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return holdfast.Errorf(holdfast.EINVALID, "malformed JSON: %s", describeJSONError(err))
	}
	return nil
}

// canonicalJSON returns a JSON body in a canonical form, for comparing two
// requests by their parameters rather than their bytes (as Stripe compares
// the parameters of requests under one Idempotency-Key): no whitespace,
// object members in RFC 8785 order, strings in their shortest escaping.
// Numbers are kept exactly as written: RFC 8785 would rewrite them as
// float64 and so merge integers beyond 2^53. A body that is not valid JSON
// (duplicate member names included) is returned as it is; decoding refuses
// it anyway.
func canonicalJSON(body []byte) []byte {
	v := jsontext.Value(bytes.Clone(body))
	if err := v.Format(jsontext.ReorderRawObjects(true)); err != nil {
		return body
	}
	return v
}

func describeJSONError(err error) string {
	var syntax *jsontext.SyntacticError
	var semantic *jsonv2.SemanticError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body is empty or cut short"
	case errors.As(err, &syntax):
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return fmt.Sprintf("member %s appears twice", syntax.JSONPointer)
		}
		return fmt.Sprintf("syntax error at byte %d", syntax.ByteOffset)
	case errors.As(err, &semantic):
		where := string(semantic.JSONPointer)
		if where == "" {
			where = "the body"
		}
		if errors.Is(err, jsonv2.ErrUnknownName) {
			return fmt.Sprintf("unknown member %s", where)
		}
		if semantic.GoType != nil {
			return fmt.Sprintf("%s must be %s", where, jsonKind(semantic.GoType.Kind()))
		}
		return fmt.Sprintf("%s is invalid", where)
	}
	return "invalid JSON"
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int64, reflect.Int, reflect.Int32:
		return "an integer that fits in 64 bits"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	}
	return "of another type"
}

// response is a rendered response.
type response struct {
	Status      int
	ContentType string
	Body        []byte
}

// render returns v as the JSON response body.
func render(status int, v any) (response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return response{}, err
	}
	return response{Status: status, ContentType: "application/json", Body: append(b, '\n')}, nil
}

// write sends a rendered response.
func write(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", resp.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// respond renders v and sends it.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	resp, err := render(status, v)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	write(w, resp)
}

// pageFrom reads limit and cursor query parameters.
func pageFrom(r *http.Request) (holdfast.Page, error) {
	var p holdfast.Page
	q := r.URL.Query()
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 {
			return p, holdfast.Errorf(holdfast.EINVALID, "limit must be an integer from 1 to %d", holdfast.MaxPageLimit)
		}
		p.Limit = n
	}
	p.Cursor = q.Get("cursor")
	return p.Normalize()
}

// list is the envelope of every list response.
type list[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}
