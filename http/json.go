package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/holdfast/holdfast"
)

// readBody reads the request body, which the server has already capped with
// http.MaxBytesReader. Returns ETOOLARGE past the cap.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, holdfast.Errorf(ETOOLARGE, "the request body is larger than %d bytes", tooLarge.Limit)
	}
	if err != nil {
		return nil, holdfast.Errorf(holdfast.EINVALID, "the request body could not be read")
	}
	return b, nil
}

// decode reads a JSON request body strictly into v: JSON content type, valid
// UTF-8, no unknown fields, exactly one value.
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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return holdfast.Errorf(holdfast.EINVALID, "malformed JSON: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return holdfast.Errorf(holdfast.EINVALID, "malformed JSON: unexpected data after the JSON value")
	}
	return nil
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("syntax error at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return fmt.Sprintf("the body must be a JSON %s", jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or cut short"
	default:
		// Unknown fields: "json: unknown field \"x\"".
		return err.Error()
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int64", "int", "int32":
		return "an integer that fits in 64 bits"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return "of another type"
}

// render returns v as the JSON response body.
func render(status int, v any) (holdfast.Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return holdfast.Response{}, err
	}
	return holdfast.Response{Status: status, ContentType: "application/json", Body: append(b, '\n')}, nil
}

// write sends a rendered response.
func write(w http.ResponseWriter, resp holdfast.Response) {
	w.Header().Set("Content-Type", resp.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// respond renders v and sends it, unless a write already stored the
// idempotent response, in which case exactly those bytes are sent.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	if c := holdfast.ClaimFromContext(r.Context()); c != nil && c.Stored() != nil {
		write(w, *c.Stored())
		return
	}
	resp, err := render(status, v)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	write(w, resp)
}

// setRender makes the request's claim, if any, render results as JSON with status.
func setRender(r *http.Request, status int, view func(any) any) {
	if c := holdfast.ClaimFromContext(r.Context()); c != nil {
		c.Render = func(result any) (holdfast.Response, error) { return render(status, view(result)) }
	}
}

// pageFrom reads limit and cursor query parameters.
func pageFrom(r *http.Request) (holdfast.Page, error) {
	var p holdfast.Page
	q := r.URL.Query()
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return p, holdfast.Errorf(holdfast.EINVALID, "limit must be an integer")
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
