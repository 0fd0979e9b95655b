package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// stream is one HTTP request's context in a VM. Its fields are guarded by
// the worker's mu; poke wakes the request's goroutine when the module
// acted on the stream from another callback (a callout answer, a tick).
type stream struct {
	id        uint32
	requestID string

	reqHeaders, reqTrailers   [][2]string
	respHeaders, respTrailers [][2]string
	reqBody, respBody         []byte // what the module sees: buffered since it paused

	respStatus  int
	codeDetails string // Envoy's response.code_details

	// route routed the request (routes.go); nil without a route table, or
	// when no route matches.
	route *Route

	reqContinued, respContinued bool
	local                       *localReply
	reset                       bool
	responded                   bool // the response is being or was sent
	wake                        chan struct{}
}

type localReply struct {
	status  int
	details string
	body    []byte
	headers [][2]string
}

func (s *stream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// calloutAnswer is the answer delivered by proxy_on_http_call_response.
type calloutAnswer struct {
	headers, trailers [][2]string
	body              []byte
}

// Action values the module returns from stream callbacks.
const (
	actionContinue = 0
	actionPause    = 1
)

// errClientGone ends a stream whose client went away.
var errClientGone = errors.New("client went away")

// errHostClosed ends a stream the host's Close found unfinished.
var errHostClosed = errors.New("host closed")

// hopByHop are connection-level headers a proxy does not forward
// (RFC 9110 7.6.1).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"transfer-encoding": true, "upgrade": true, "trailer": true,
}

// serve runs one request: request callbacks, the upstream (unless the
// module answered), response callbacks, then the client's response, and
// finally proxy_on_log, proxy_on_done and proxy_on_delete, in Envoy's order.
func (w *worker) serve(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	if w.failed != nil {
		w.mu.Unlock()
		http.Error(rw, "wasm VM failed", http.StatusServiceUnavailable)
		return
	}
	s := &stream{id: w.nextContext, requestID: newRequestID(), wake: make(chan struct{}, 1)}
	w.nextContext++
	w.streams[s.id] = s
	s.reqHeaders = requestHeaders(r, s.requestID)
	s.route = w.h.route(r.URL.Path)
	_, err := w.call(w.ctx, "proxy_on_context_create", uint64(s.id), rootContextID)
	w.mu.Unlock()
	defer w.finish(s)
	if err != nil {
		http.Error(rw, "wasm VM failed", http.StatusServiceUnavailable)
		return
	}

	err = w.requestPath(r, s)
	switch {
	case errors.Is(err, errClientGone):
		return
	case errors.Is(err, errHostClosed):
		panic(http.ErrAbortHandler) // Envoy resets what it has not finished
	case err != nil:
		w.log.Warn("request", "err", err, "context", s.id)
		if s.reset {
			panic(http.ErrAbortHandler)
		}
		http.Error(rw, "wasm VM failed", http.StatusServiceUnavailable)
		return
	}
	w.mu.Lock()
	local := s.local
	w.mu.Unlock()
	if local != nil {
		w.respond(rw, r, s, local.status, local.details, local.headers, local.body, nil)
		return
	}

	if s.route == nil && len(w.h.cfg.Routes) > 0 {
		// Envoy's router answers a request no route matches.
		w.respond(rw, r, s, 404, "route_not_found", nil, nil, nil)
		return
	}
	resp, details := w.forward(r, s)
	if resp == nil {
		// No answer from the upstream: Envoy's router answers itself and
		// that local reply goes through the filter's response callbacks.
		status, body := 503, "upstream connect error or disconnect/reset before headers. reset reason: "+details
		if details == detailTimeout {
			status, body = 504, "upstream request timeout"
		}
		if r.Context().Err() != nil {
			return // the client went away first: no response at all
		}
		w.respond(rw, r, s, status, details, [][2]string{{"content-type", "text/plain"}}, []byte(body), nil)
		return
	}
	defer resp.Body.Close()
	headers := responseHeaders(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBody)+1))
	if err != nil || len(body) > maxBody {
		// The upstream reset mid-body (or sent more than this host
		// holds): Envoy passes what came on without end_of_stream, then
		// resets the client's stream.
		w.respond(rw, r, s, resp.StatusCode, "via_upstream", headers, body[:min(len(body), maxBody)], errors.New("upstream reset mid-body"))
		return
	}
	w.respond(rw, r, s, resp.StatusCode, "via_upstream", headers, body, nil)
}

// maxBody bounds what the host reads of a body it must hold in memory.
const maxBody = 64 << 20

// bodyChunk is how much of a body one body callback gets at most.
const bodyChunk = 64 << 10

// requestPath delivers the request's headers, body chunks and trailers to
// the module and waits while it pauses the request, until it continues
// it, answers it, resets it, or the client goes away.
func (w *worker) requestPath(r *http.Request, s *stream) error {
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	w.mu.Lock()
	action, err := w.call(w.ctx, "proxy_on_request_headers", uint64(s.id), uint64(len(s.reqHeaders)), boolArg(!hasBody))
	w.mu.Unlock()
	if err != nil {
		return err
	}
	paused := action == actionPause
	var forwarded []byte
	buf := make([]byte, bodyChunk)
	for hasBody {
		if done, err := w.stopped(s); done || err != nil {
			return err
		}
		n, end, rerr := readChunk(r.Body, buf)
		if rerr != nil {
			// The client went away mid-body (net/http reports a body cut
			// short as io.ErrUnexpectedEOF): Envoy resets the stream and
			// the module never sees the request end.
			return errClientGone
		}
		trailers := trailerPairs(r.Trailer)
		w.mu.Lock()
		s.reqBody = append(s.reqBody, buf[:n]...)
		eos := end && len(trailers) == 0
		a, err := w.call(w.ctx, "proxy_on_request_body", uint64(s.id), uint64(len(s.reqBody)), boolArg(eos))
		if err == nil && a == actionPause && s.local == nil && len(s.reqBody) > w.h.cfg.BufferLimit {
			// Envoy: a buffering filter over the connection's limit.
			s.local = &localReply{status: 413, details: "request_payload_too_large", body: []byte("Payload Too Large")}
		}
		if err == nil && a != actionPause {
			forwarded = append(forwarded, s.reqBody...)
			s.reqBody = s.reqBody[:0]
		}
		if err == nil && end && len(trailers) > 0 {
			s.reqTrailers = trailers
			a, err = w.call(w.ctx, "proxy_on_request_trailers", uint64(s.id), uint64(len(trailers)))
		}
		w.mu.Unlock()
		if err != nil {
			return err
		}
		paused = a == actionPause
		if end {
			break
		}
	}
	if paused {
		if err := w.waitRequest(r.Context(), s); err != nil {
			return err
		}
	}
	w.mu.Lock()
	forwarded = append(forwarded, s.reqBody...)
	s.reqBody = forwarded // the bytes the upstream gets
	w.mu.Unlock()
	return nil
}

// readChunk fills buf from the request body. end is true only when the
// body ended as announced (io.EOF); any other error is returned.
func readChunk(body io.Reader, buf []byte) (n int, end bool, err error) {
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// stopped reports whether the module answered or reset the stream.
func (w *worker) stopped(s *stream) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.reset {
		return true, errors.New("the module reset the stream")
	}
	return s.local != nil, nil
}

// waitRequest waits until the module continues or answers the request.
// Past the stream idle timeout the host answers 408, as Envoy does.
func (w *worker) waitRequest(ctx context.Context, s *stream) error {
	if err := w.wait(ctx, s, func() bool { return s.reqContinued || s.local != nil }, func() {
		if s.local == nil && !s.reqContinued {
			s.local = &localReply{status: 408, details: "stream_idle_timeout", body: []byte("stream timeout")}
		}
	}); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.reset {
		return errors.New("the module reset the stream")
	}
	return nil
}

// wait waits, with mu released, until done (called with mu held) holds
// or the stream is reset, the client goes away or the host closes. onIdle
// (mu held) runs when the stream idle timeout passes; wait then returns
// if done holds, else nil all the same when onIdle is nil.
func (w *worker) wait(ctx context.Context, s *stream, done func() bool, onIdle func()) error {
	idle := time.NewTimer(w.h.cfg.StreamIdleTimeout)
	defer idle.Stop()
	for {
		w.mu.Lock()
		ok := done() || s.reset
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return errClientGone
		case <-w.h.stop:
			return errHostClosed
		case <-idle.C:
			if onIdle == nil {
				return nil
			}
			w.mu.Lock()
			onIdle()
			w.mu.Unlock()
		}
	}
}

// Envoy's response code details for the router's own answers.
const (
	detailTimeout    = "upstream_response_timeout"
	detailConnFail   = "upstream_reset_before_response_started{connection_failure}"
	detailConnTermin = "upstream_reset_before_response_started{connection_termination}"
)

// forward sends the request as the module left it to the upstream, once.
// It returns nil and Envoy's response code details when no response came.
func (w *worker) forward(r *http.Request, s *stream) (*http.Response, string) {
	w.mu.Lock()
	headers := append([][2]string(nil), s.reqHeaders...)
	body := s.reqBody
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), w.h.cfg.RouteTimeout)
	req, err := upstreamRequest(ctx, w.h.cfg.Upstream, headers, body)
	if err != nil {
		cancel()
		w.log.Warn("upstream request", "err", err)
		return nil, detailConnFail
	}
	resp, err := w.h.upstream.Do(req)
	if err != nil {
		cancel()
		var op *net.OpError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return nil, detailTimeout
		case errors.As(err, &op) && op.Op == "dial":
			return nil, detailConnFail
		}
		return nil, detailConnTermin
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, ""
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// upstreamRequest builds the upstream request from the module's view of
// the headers. The body has no GetBody, so net/http never replays it.
func upstreamRequest(ctx context.Context, upstream string, headers [][2]string, body []byte) (*http.Request, error) {
	var method, path, authority string
	out := http.Header{}
	for _, kv := range headers {
		switch kv[0] {
		case ":method":
			method = kv[1]
		case ":path":
			path = kv[1]
		case ":authority":
			authority = kv[1]
		case ":scheme":
		default:
			if !hopByHop[kv[0]] && kv[0] != "content-length" && kv[0] != "host" {
				out.Add(kv[0], kv[1])
			}
		}
	}
	if method == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("request headers lack :method or :path (%q %q)", method, path)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+upstream+path, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream request: %w", err)
	}
	req.Header = out
	req.Host = authority
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	// A nil Body with an Idempotency-Key header would be replayable:
	// give every request a body reader without GetBody.
	if req.Body == nil {
		req.Body = io.NopCloser(bytes.NewReader(nil))
		req.ContentLength = 0
	}
	req.GetBody = nil
	return req, nil
}

// respond runs the response (the upstream's, the router's or the module's
// own local reply) through the module's response callbacks and sends the
// client whatever the module left. tail, when set, means the body is cut
// short (the upstream broke mid-body): as in Envoy, the module never sees
// end_of_stream, and the client's stream is reset after whatever the
// module let through.
//
// A local reply that arises once the module has seen the response headers
// (the buffer limit passed while the module buffers the body, or the
// module's own send_local_response while it holds the response) does not
// go through the module again: see localReplyMidResponse.
func (w *worker) respond(rw http.ResponseWriter, r *http.Request, s *stream, status int, details string, headers [][2]string, body []byte, tail error) {
	w.mu.Lock()
	isLocal := s.local != nil
	s.respBody, s.respTrailers = nil, nil
	s.respStatus = status
	s.codeDetails = details
	s.respHeaders = append([][2]string{{":status", strconv.Itoa(status)}}, headers...)
	if isLocal {
		s.responded = true // the module cannot send a second local reply
	}
	a, err := w.call(w.ctx, "proxy_on_response_headers", uint64(s.id), uint64(len(s.respHeaders)), boolArg(len(body) == 0 && tail == nil))
	paused := a == actionPause
	// Envoy sends headers the module continued downstream at once; this
	// host holds them until the body is in, but answers as if they went.
	headersOut := err == nil && !paused
	var out []byte
	var tooLarge bool
	for off := 0; err == nil && off < len(body); off += bodyChunk {
		end := min(off+bodyChunk, len(body))
		s.respBody = append(s.respBody, body[off:end]...)
		a, err = w.call(w.ctx, "proxy_on_response_body", uint64(s.id), uint64(len(s.respBody)), boolArg(end == len(body) && tail == nil))
		paused = a == actionPause
		if err == nil && !paused {
			out = append(out, s.respBody...)
			s.respBody = s.respBody[:0]
		}
		if paused && len(s.respBody) > w.h.cfg.BufferLimit && !isLocal {
			tooLarge = true // Envoy: responseDataTooLarge
			break
		}
	}
	w.mu.Unlock()
	if err != nil {
		http.Error(rw, "wasm VM failed", http.StatusServiceUnavailable)
		return
	}
	if tooLarge {
		w.localReplyMidResponse(rw, s, &localReply{status: 500, details: "response_payload_too_large", body: []byte("Internal Server Error")}, headersOut, out)
		return
	}
	if tail != nil {
		w.mu.Lock()
		s.responded = true
		final := append([][2]string(nil), s.respHeaders...)
		w.mu.Unlock()
		if !paused {
			// The headers and the body so far went on; then the reset.
			writeHeaders(rw, final, status)
			rw.Write(out)
			http.NewResponseController(rw).Flush()
		}
		panic(http.ErrAbortHandler)
	}
	if paused && !isLocal {
		switch err := w.waitResponse(r.Context(), s); {
		case errors.Is(err, errHostClosed):
			panic(http.ErrAbortHandler)
		case err != nil:
			return
		}
	}
	w.mu.Lock()
	if !isLocal && s.local != nil {
		// The module answered instead of the upstream response.
		lr := s.local
		w.mu.Unlock()
		w.localReplyMidResponse(rw, s, lr, headersOut, out)
		return
	}
	s.responded = true
	out = append(out, s.respBody...)
	final := append([][2]string(nil), s.respHeaders...)
	w.mu.Unlock()
	rw.Header().Set("content-length", strconv.Itoa(len(out)))
	writeHeaders(rw, final, status)
	rw.Write(out)
}

// localReplyMidResponse sends a local reply that arose after the module
// saw the response headers, as Envoy's FilterManager::sendLocalReply does
// then: if no response headers went downstream yet, the reply goes
// straight to the client (sendDirectLocalReply), past the filter chain —
// the module's response callbacks never see it, and the client gets none
// of the upstream's headers; if headers went downstream already (the
// module continued them: sent is true), the stream is reset after what
// went out. Either way the module hears only proxy_on_log, proxy_on_done
// and proxy_on_delete after this.
func (w *worker) localReplyMidResponse(rw http.ResponseWriter, s *stream, lr *localReply, sent bool, out []byte) {
	w.mu.Lock()
	s.responded = true
	if sent {
		final := append([][2]string(nil), s.respHeaders...)
		status := s.respStatus
		s.codeDetails = lr.details
		w.mu.Unlock()
		writeHeaders(rw, final, status)
		rw.Write(out)
		http.NewResponseController(rw).Flush()
		panic(http.ErrAbortHandler)
	}
	headers := append([][2]string(nil), lr.headers...)
	if len(lr.body) > 0 && !hasHeader(headers, "content-type") {
		headers = append(headers, [2]string{"content-type", "text/plain"})
	}
	s.respStatus, s.codeDetails = lr.status, lr.details
	s.respHeaders = append([][2]string{{":status", strconv.Itoa(lr.status)}}, headers...)
	final := append([][2]string(nil), s.respHeaders...)
	w.mu.Unlock()
	rw.Header().Set("content-length", strconv.Itoa(len(lr.body)))
	writeHeaders(rw, final, lr.status)
	rw.Write(lr.body)
}

func hasHeader(headers [][2]string, name string) bool {
	for _, kv := range headers {
		if kv[0] == name {
			return true
		}
	}
	return false
}

// waitResponse waits until the module continues the response. Past the
// stream idle timeout the host sends what it has (Envoy would reset; this
// is kinder to tests).
func (w *worker) waitResponse(ctx context.Context, s *stream) error {
	return w.wait(ctx, s, func() bool { return s.respContinued || s.local != nil }, nil)
}

// writeHeaders writes the module's view of the response headers to the
// client; content-length is the caller's (set only for a whole body).
func writeHeaders(rw http.ResponseWriter, headers [][2]string, fallbackStatus int) {
	status := fallbackStatus
	h := rw.Header()
	for _, kv := range headers {
		switch {
		case kv[0] == ":status":
			if n, err := strconv.Atoi(kv[1]); err == nil && n >= 100 && n <= 999 {
				status = n
			}
		case strings.HasPrefix(kv[0], ":"), hopByHop[kv[0]], kv[0] == "content-length":
		default:
			h.Add(kv[0], kv[1])
		}
	}
	rw.WriteHeader(status)
}

// finish ends the stream in the module in Envoy's order: proxy_on_log
// (Envoy's access log runs first), then proxy_on_done and proxy_on_delete
// as the filters are destroyed.
func (w *worker) finish(s *stream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call(w.ctx, "proxy_on_log", uint64(s.id))
	w.call(w.ctx, "proxy_on_done", uint64(s.id))
	w.call(w.ctx, "proxy_on_delete", uint64(s.id))
	delete(w.streams, s.id)
}

// requestHeaders is the module's view of a request: lower-case names,
// pseudo-headers first, plus the headers Envoy adds by default.
func requestHeaders(r *http.Request, requestID string) [][2]string {
	out := [][2]string{
		{":authority", r.Host}, {":path", r.URL.RequestURI()}, {":method", r.Method}, {":scheme", "http"},
	}
	for name, vals := range r.Header {
		n := strings.ToLower(name)
		if hopByHop[n] || n == "x-request-id" || n == "x-forwarded-proto" {
			continue
		}
		for _, v := range vals {
			out = append(out, [2]string{n, v})
		}
	}
	return append(out, [2]string{"x-forwarded-proto", "http"}, [2]string{"x-request-id", requestID})
}

func responseHeaders(resp *http.Response) [][2]string {
	var out [][2]string
	for name, vals := range resp.Header {
		n := strings.ToLower(name)
		if hopByHop[n] {
			continue
		}
		for _, v := range vals {
			out = append(out, [2]string{n, v})
		}
	}
	return out
}

func trailerPairs(t http.Header) [][2]string {
	var out [][2]string
	for name, vals := range t {
		for _, v := range vals {
			out = append(out, [2]string{strings.ToLower(name), v})
		}
	}
	return out
}

func boolArg(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dispatch starts a callout to cluster; the answer (or its failure:
// no headers, no body, as Envoy reports a timeout or a reset) is
// delivered by proxy_on_http_call_response on the root context. Envoy
// refuses a callout to an unknown cluster or without :method, :path and
// :authority.
func (w *worker) dispatch(cluster string, headers [][2]string, body []byte, timeout time.Duration) (uint32, uint32) {
	addr, ok := w.h.cfg.Clusters[cluster]
	if !ok {
		w.log.Warn("http callout to an unknown cluster", "cluster", cluster)
		return 0, statusBadArgument
	}
	var method, path, authority string
	for _, kv := range headers {
		switch kv[0] {
		case ":method":
			method = kv[1]
		case ":path":
			path = kv[1]
		case ":authority":
			authority = kv[1]
		}
	}
	if method == "" || path == "" || authority == "" {
		return 0, statusBadArgument
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	w.nextCallout++
	id := w.nextCallout
	w.h.calloutWG.Add(1)
	w.h.calloutsInFlight.Add(1)
	go func() {
		defer w.h.calloutWG.Done()
		defer w.h.calloutsInFlight.Add(-1)
		w.runCallout(id, addr, headers, body, timeout)
	}()
	return id, statusOK
}

func (w *worker) runCallout(id uint32, addr string, headers [][2]string, body []byte, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(w.h.calloutCtx, timeout)
	defer cancel()
	ans := &calloutAnswer{}
	req, err := upstreamRequest(ctx, addr, headers, body)
	if err == nil {
		var resp *http.Response
		if resp, err = w.h.callouts.Do(req); err == nil {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
			resp.Body.Close()
			if rerr == nil {
				ans.headers = append([][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, responseHeaders(resp)...)
				ans.body = b
				ans.trailers = trailerPairs(resp.Trailer)
			}
		}
	}
	if err != nil {
		w.log.Debug("http callout failed", "addr", addr, "err", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return // the host closed: nobody to answer
	}
	w.callout = ans
	// To the root context, whatever became of the stream that dispatched
	// it: the callout belongs to the root context, as in proxy-wasm-cpp-host.
	if _, err := w.call(w.ctx, "proxy_on_http_call_response", rootContextID, uint64(id), uint64(len(ans.headers)), uint64(len(ans.body)), uint64(len(ans.trailers))); err == nil && len(ans.headers) > 0 {
		w.h.answeredMu.Lock()
		if w.h.answeredByPath == nil {
			w.h.answeredByPath = map[string]int{}
		}
		for _, kv := range headers {
			if kv[0] == ":path" {
				w.h.answeredByPath[kv[1]]++
			}
		}
		w.h.answeredMu.Unlock()
	}
	w.callout = nil
}
