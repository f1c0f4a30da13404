package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// A view renders the result of a write: live, as the write returned it, or
// replayed, decoded from its stored outcome (JSON of the same type). One
// view for both is what makes a replay repeat the first response.
type view struct {
	status int                                       // of a success
	body   func(result any) any                      // the response body of a result
	decode func(stored json.RawMessage) (any, error) // a stored result, as the write's result type
}

// viewOf returns the view of a write whose result is a T, answered with
// status and body(result).
func viewOf[T any](status int, body func(T) any) view {
	return view{
		status: status,
		body:   func(result any) any { return body(result.(T)) },
		decode: func(stored json.RawMessage) (any, error) {
			var v T
			err := (&holdfast.Outcome{Result: stored}).Decode(&v)
			return v, err
		},
	}
}

// Where a write claimed before it runs keeps its outcome.
type storage int

const (
	// storedByWrite: the write's service stores a success's outcome in the
	// transaction of its effects (accounts, tenants, API keys); a final
	// error, which had none, is stored after the write.
	storedByWrite storage = iota
	// storedAfterWrite: the write's effects lie outside the database
	// (events in the log, stored under ids derived from the key; a consumer
	// group paused or resumed; a dead letter redriven), so a takeover after
	// a crash repeats nothing; its outcome is stored after it.
	storedAfterWrite
)

// idempotent answers a POST by running its write, implementing the
// Idempotency-Key header. run does the work and returns the domain result
// v renders, or an error; claim is the request's key, nil without
// one (a write whose service stores its outcome with its effects passes it
// on). The first request with a key claims it and runs; a retry with the
// same method, path and body gets the stored outcome, rendered through v,
// with Idempotent-Replayed: true. A success and a final error
// (holdfast.IsFinal) are stored; a fault, an overload or a timeout releases
// the key so the client may retry with it.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, v view, st storage,
	run func(claim *holdfast.IdempotencyClaim) (any, error)) {
	key, fp, ok := s.idempotencyKey(w, r)
	if !ok {
		return
	}
	if key == "" {
		result, err := run(nil)
		s.answer(w, r, v, result, err)
		return
	}

	// A claim must not be abandoned halfway because the client went away:
	// a claim committed but never seen would lock the key until its
	// timeout. So it runs to completion under its own short deadline.
	claimCtx, cancelClaim := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	claim, stored, err := s.IdempotencyService.Claim(claimCtx, tenantFrom(r.Context()), key, fp)
	cancelClaim()
	if err != nil {
		s.Error(w, r, err)
		return
	}
	if stored != nil {
		s.replay(w, r, v, stored)
		return
	}
	claim.RequestID = requestIDFrom(r.Context())
	result, err := run(claim)
	s.answer(w, r, v, result, err)
	if err == nil && st == storedByWrite {
		return
	}
	s.settleKey(r, claim, result, err)
}

// settleKey stores the outcome of a write that ran under claim and did not
// store it itself, or releases the key when there is none to store. None
// of it may be cut short by the request's own deadline.
func (s *Server) settleKey(r *http.Request, claim *holdfast.IdempotencyClaim, result any, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	o, encodeErr := holdfast.NewOutcome(claim.RequestID, result, err)
	if encodeErr != nil {
		s.logger.Error("idempotency key: outcome", "request_id", claim.RequestID, "err", encodeErr)
	}
	if o != nil {
		err = s.IdempotencyService.Complete(ctx, claim, o)
	} else {
		err = s.IdempotencyService.Release(ctx, claim)
	}
	if err != nil && !holdfast.IsCode(err, holdfast.EIDEMPOTENCYINUSE) {
		s.logger.Error("idempotency key", "request_id", claim.RequestID, "err", err)
	}
}

// idempotentInWrite answers a POST whose write claims its Idempotency-Key
// inside its own transaction (transfers, which are applied in group-commit
// batches): nothing is claimed up front, so the request costs no extra
// round trip and a crash can leave no claim behind. run replays (returns
// the outcome an earlier request with the key stored), refuses or runs,
// and stores the outcome with its effects.
func (s *Server) idempotentInWrite(w http.ResponseWriter, r *http.Request, v view,
	run func(claim *holdfast.IdempotencyClaim) (result any, replayed *holdfast.Outcome, err error)) {
	key, fp, ok := s.idempotencyKey(w, r)
	if !ok {
		return
	}
	var claim *holdfast.IdempotencyClaim
	if key != "" {
		claim = &holdfast.IdempotencyClaim{TenantID: tenantFrom(r.Context()), Key: key, Fingerprint: fp, RequestID: requestIDFrom(r.Context())}
	}
	result, replayed, err := run(claim)
	if replayed != nil {
		s.replay(w, r, v, replayed)
		return
	}
	s.answer(w, r, v, result, err)
}

// answer sends a write's answer: its error as a problem, or its result
// through v.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, v view, result any, err error) {
	if err != nil {
		s.Error(w, r, err)
		return
	}
	resp, err := render(v.status, v.body(result))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	write(w, resp)
}

// replay sends the outcome an earlier request with the key stored, marked
// Idempotent-Replayed: its result through v, or its error as the problem
// that request got, with that request's id.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, v view, o *holdfast.Outcome) {
	if o.Err != nil {
		w.Header().Set("Idempotent-Replayed", "true")
		s.problem(w, r, o.Err, o.RequestID)
		return
	}
	result, err := v.decode(o.Result)
	if err != nil {
		s.Error(w, r, fmt.Errorf("replay a stored outcome: %w", err))
		return
	}
	resp, err := render(v.status, v.body(result))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	w.Header().Set("Idempotent-Replayed", "true")
	write(w, resp)
}

// idempotencyKey reads a POST's Idempotency-Key and fingerprints the
// request (method, path, query and body), leaving the body readable again.
// A JSON body is fingerprinted in its canonical form (see canonicalJSON),
// so a retry that writes the same JSON otherwise is the same request.
// It returns "" when there is no key, and ok=false after answering a
// malformed key or body itself.
func (s *Server) idempotencyKey(w http.ResponseWriter, r *http.Request) (key string, fp []byte, ok bool) {
	keys, present := r.Header["Idempotency-Key"]
	if r.Method != http.MethodPost || !present {
		return "", nil, true
	}
	if len(keys) != 1 {
		s.Error(w, r, holdfast.Errorf(holdfast.EINVALID, "send one Idempotency-Key header"))
		return "", nil, false
	}
	if err := holdfast.ValidIdempotencyKey(keys[0]); err != nil {
		s.Error(w, r, err)
		return "", nil, false
	}
	body, err := readBody(r)
	if err != nil {
		s.Error(w, r, err)
		return "", nil, false
	}
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "?" + r.URL.RawQuery + "\n"))
	h.Write(canonicalJSON(body))
	r.Body = readCloser{bytes.NewReader(body)}
	return keys[0], h.Sum(nil), true
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
