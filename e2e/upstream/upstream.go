// Package upstream is the demo upstream of the local stack: a tiny payments
// API that counts how many times it executed an operation, so that the
// end-to-end suite can tell "replayed by the gateway" from "ran again".
//
// The contract (DESIGN.md, "The local stack"):
//
//	POST /payments        201 {"id":"pay_<n>", ...the request's JSON members}; one execution
//	GET  /__executions    200 {"count":N}
//	GET  /__ledger        200 {"LABEL":N, ...}: executions per X-Demo-Ledger label
//	POST /__idempotency/{attempt}
//	                      the reconcile lookup (reconcile.go): executed with
//	                      the stored response, or not_executed after
//	                      tombstoning the attempt
//
// Control headers, never part of the fingerprint:
//
//	X-Demo-Delay-Ms: N      execute, then wait N ms (0..60000) before answering
//	X-Demo-Status: S        answer S (200..999) without executing, marked as not
//	                        executed: header idempotency-not-executed: 1
//	X-Demo-Fail-After: S    execute, then answer S (200..999): an error after commit
//	X-Demo-Drop: 1          execute, then close the connection without an answer
//	                        (reset: with a TCP reset instead of a FIN)
//	X-Demo-Pad-Bytes: N     execute, and add a member "pad" of N bytes
//	                        (0..16777216) to the answer: a large response
//	X-Demo-Ledger: LABEL    count the execution (if any) under LABEL too
//	                        (1..200 bytes): GET /__ledger shows how many times
//	                        each operation ran, so a test can name the keys
//	                        that executed twice, not only count them
//
// X-Demo-Status (with X-Demo-Delay-Ms: wait, then answer) excludes the
// others, which need an execution; X-Demo-Drop
// excludes X-Demo-Fail-After (there is no answer). A bad control value or
// combination is a 400 naming the header, without executing.
//
// A request carrying Idemgate-Attempt (the gateway's attempt id on routes
// with on_indeterminate: reconcile) executes at most once per attempt id,
// and not at all once a lookup has answered "not executed" for it.
package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Control header names.
const (
	HeaderDelay     = "X-Demo-Delay-Ms"
	HeaderStatus    = "X-Demo-Status"
	HeaderFailAfter = "X-Demo-Fail-After"
	HeaderDrop      = "X-Demo-Drop"
	HeaderPad       = "X-Demo-Pad-Bytes"
	HeaderLedger    = "X-Demo-Ledger"
)

// HeaderNotExecuted marks an answer as "nothing happened, a retry is
// safe": the filter's default not-executed response header (DESIGN.md's
// outcome classes). Its presence is what counts; the value is 1.
const HeaderNotExecuted = "Idempotency-Not-Executed"

const (
	// MaxDelay bounds X-Demo-Delay-Ms so a typo cannot hold a connection
	// for hours.
	MaxDelay = 60 * time.Second
	// maxBody bounds what a payment request may carry.
	maxBody = 1 << 20
	// MaxPad bounds X-Demo-Pad-Bytes: large enough to exceed any buffer a
	// test sets, small enough not to exhaust memory.
	MaxPad = 16 << 20
	// maxLabel and MaxLabels bound the ledger: a label names an
	// operation, and a run of the chaos tests has at most tens of
	// thousands. Executions past MaxLabels distinct labels are counted
	// under OverflowLabel, so a count is never silently dropped.
	maxLabel      = 200
	MaxLabels     = 1 << 20
	OverflowLabel = "(overflow)"
	// minStatus and maxStatus bound the statuses a control header may ask
	// for: net/http writes 200..999 as final answers (1xx are
	// informational), and >= 600 is what tests of odd statuses need.
	minStatus, maxStatus = 200, 999
)

// Server is the demo upstream. The zero value is not usable; call New.
type Server struct {
	log        *slog.Logger
	executions atomic.Int64
	mux        *http.ServeMux
	token      string    // Options.ReconcileToken
	started    time.Time // Options.Started

	ledgerMu sync.Mutex
	ledger   map[string]int64 // executions per X-Demo-Ledger label

	attemptsMu  sync.Mutex
	attempts    map[string]*attempt // per Idemgate-Attempt: executed or tombstoned
	maxAttempts int                 // MaxAttempts; lower in a test
}

// Options configure a Server.
type Options struct {
	// ReconcileToken, when set, is the bearer credential a lookup
	// (POST /__idempotency/{attempt}) must carry; otherwise 401.
	ReconcileToken string
	// Started is when this upstream's memory begins: an attempt created
	// before it may have executed in a previous run, and is answered
	// "unknown". Zero: now.
	Started time.Time
}

// New returns a Server that logs to log (nil: discard).
func New(log *slog.Logger, o Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	s := &Server{log: log, mux: http.NewServeMux(), ledger: map[string]int64{}, attempts: map[string]*attempt{},
		token: o.ReconcileToken, started: o.Started, maxAttempts: MaxAttempts}
	s.mux.HandleFunc("POST /payments", s.payments)
	// Paths the e2e route table sends through Envoy routes that the
	// policy selects by route name and route metadata.
	s.mux.HandleFunc("POST /routed/", s.payments)
	s.mux.HandleFunc("GET /__executions", s.count)
	s.mux.HandleFunc("GET /__ledger", s.serveLedger)
	s.mux.HandleFunc("POST "+PathReconcile+"{attempt}", s.serveReconcile)
	return s
}

// Executions is how many payments have executed so far.
func (s *Server) Executions() int64 { return s.executions.Load() }

// Ledger is a copy of the executions per X-Demo-Ledger label.
func (s *Server) Ledger() map[string]int64 {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	m := make(map[string]int64, len(s.ledger))
	for k, v := range s.ledger {
		m[k] = v
	}
	return m
}

func (s *Server) record(label string) {
	if label == "" {
		return
	}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	if _, ok := s.ledger[label]; !ok && len(s.ledger) >= MaxLabels {
		label = OverflowLabel
	}
	s.ledger[label]++
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// control is what the control headers ask for.
type control struct {
	delay     time.Duration
	status    int // 0: execute normally
	failAfter int // 0: answer 201
	drop      bool
	reset     bool // X-Demo-Drop: reset: close with a TCP reset
	pad       int
	label     string // X-Demo-Ledger
}

// parseControl reads the control headers; an error names the header.
func parseControl(h http.Header) (control, error) {
	var c control
	if v, ok := single(h, HeaderDelay); ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxDelay {
			return c, fmt.Errorf("%s: %q is not a whole number of milliseconds in 0..%d", HeaderDelay, v, MaxDelay.Milliseconds())
		}
		c.delay = time.Duration(ms) * time.Millisecond
	}
	var err error
	if c.status, err = statusHeader(h, HeaderStatus); err != nil {
		return c, err
	}
	if c.failAfter, err = statusHeader(h, HeaderFailAfter); err != nil {
		return c, err
	}
	if v, ok := single(h, HeaderDrop); ok {
		switch v {
		case "1":
		case "reset":
			c.reset = true
		default:
			return c, fmt.Errorf("%s: %q; want 1 (close) or reset (TCP reset)", HeaderDrop, v)
		}
		c.drop = true
	}
	if v, ok := single(h, HeaderPad); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxPad {
			return c, fmt.Errorf("%s: %q is not a number of bytes in 0..%d", HeaderPad, v, MaxPad)
		}
		c.pad = n
	}
	if v, ok := single(h, HeaderLedger); ok {
		if v == "" || len(v) > maxLabel {
			return c, fmt.Errorf("%s: %d bytes; want 1..%d", HeaderLedger, len(v), maxLabel)
		}
		c.label = v
	}
	// Contradictions are refused rather than resolved silently: a test
	// that asks for both would not be testing what it says.
	if c.status != 0 {
		for _, other := range []string{HeaderFailAfter, HeaderDrop, HeaderPad} {
			if _, ok := single(h, other); ok {
				return c, fmt.Errorf("%s: answers without executing, so %s does not apply", HeaderStatus, other)
			}
		}
	}
	if c.drop && c.failAfter != 0 {
		return c, fmt.Errorf("%s: closes without an answer, so %s does not apply", HeaderDrop, HeaderFailAfter)
	}
	return c, nil
}

// statusHeader reads a status control header; 0 when absent.
func statusHeader(h http.Header, name string) (int, error) {
	v, ok := single(h, name)
	if !ok {
		return 0, nil
	}
	st, err := strconv.Atoi(v)
	if err != nil || st < minStatus || st > maxStatus {
		return 0, fmt.Errorf("%s: %q is not a status in %d..%d", name, v, minStatus, maxStatus)
	}
	return st, nil
}

// single returns the header's value when present; repeated headers are
// joined, so "1, 1" is refused rather than guessed at.
func single(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return fmt.Sprint(vs), true
	}
	return vs[0], true
}

func (s *Server) payments(w http.ResponseWriter, r *http.Request) {
	c, err := parseControl(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if c.status != 0 {
		if !wait(r, c.delay) {
			return
		}
		s.log.Info("payment refused on request, not executed", "status", c.status)
		// The mark tells the gateway that nothing happened: it may free
		// the key, so that a retry executes.
		w.Header().Set(HeaderNotExecuted, "1")
		writeJSON(w, c.status, map[string]any{"error": "answered as asked by " + HeaderStatus + ", not executed", "status": c.status})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	var fields map[string]json.RawMessage
	if err := decodeObject(body, &fields); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}

	var pad json.RawMessage
	if c.pad > 0 {
		pad, _ = json.Marshal(strings.Repeat("x", c.pad))
	}
	// execute runs the payment and builds the 201 it answers (also when
	// the answer will fail: the payment exists all the same).
	execute := func() api.StoredResponse {
		n := s.executions.Add(1)
		s.record(c.label)
		id, _ := json.Marshal(fmt.Sprintf("pay_%d", n))
		fields["id"] = id
		if pad != nil {
			fields["pad"] = pad
		}
		return api.StoredResponse{Status: http.StatusCreated, Headers: api.Headers{{"Content-Type", "application/json"}}, Body: encodeJSON(fields)}
	}
	var resp api.StoredResponse
	if att, ok := single(r.Header, HeaderAttempt); ok {
		st, executed, ok := s.begin(att, r.Header.Get("Idempotency-Key"), execute)
		switch {
		case !ok:
			w.Header().Set(HeaderNotExecuted, "1")
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("attempt table full (%d): not executed", s.maxAttempts))
			return
		case !st.executed:
			s.log.Info("payment refused: its attempt was answered not executed", "attempt", att)
			refuseTombstoned(w, att)
			return
		case !executed:
			// The same attempt again (a proxy re-sent it): the unique
			// attempt id keeps it from running twice.
			s.log.Info("payment not executed again: its attempt ran already", "attempt", att)
			writeStored(w, st.resp)
			return
		}
		resp = st.resp
	} else {
		resp = execute()
	}
	id := fields["id"]
	s.log.Info("payment executed", "id", string(id), "attempt", r.Header.Get(HeaderAttempt), "delay", c.delay, "drop", c.drop, "fail_after", c.failAfter, "pad", c.pad)

	if !wait(r, c.delay) {
		return // the client went away; the payment has executed all the same
	}
	if c.drop {
		drop(w, c.reset)
		return
	}
	if c.failAfter != 0 {
		// The payment has run; only its answer fails. The id is in the
		// body so that a test can tell a replay from a second execution.
		writeJSON(w, c.failAfter, map[string]any{"error": "answered as asked by " + HeaderFailAfter + " after executing", "status": c.failAfter, "id": id})
		return
	}
	writeStored(w, resp)
}

// wait sleeps d, or until the client goes away (false).
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// decodeObject accepts exactly one JSON object.
func decodeObject(body []byte, into *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if *into == nil {
		return errors.New("not a JSON object: null")
	}
	if dec.More() {
		return errors.New("not a JSON object: data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("not a JSON object: data after the object")
	}
	return nil
}

// drop closes the connection without writing a response: what an upstream
// that crashed after executing looks like from the gateway. With reset the
// close is a TCP reset (SO_LINGER 0), as from a process killed mid-answer
// or a middlebox, instead of an orderly FIN.
func drop(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot be hijacked; aborting the handler resets the stream.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *Server) count(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int64{"count": s.executions.Load()})
}

func (s *Server) serveLedger(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Ledger())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// encodeJSON is a payment's answer body as writeJSON writes it.
func encodeJSON(v map[string]json.RawMessage) []byte {
	b, _ := json.Marshal(v) // RawMessages that came from a decoded object, and strings
	return append(b, '\n')
}
