//go:build !wasm

package main

import (
	"crypto/sha256"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const paymentResponse = `{"id":"pay_1","amount":100}`

// completeOnce runs a request through acquire, a 201 response and a
// complete answered completeStatus; it returns the reserve it sent.
func completeOnce(t *testing.T, host proxytest.HostEmulator, headers [][2]string, respBody string, completeStatus int) api.ReserveRequest {
	t.Helper()
	id := host.InitializeHttpContext()
	reserved := acquire(t, host, id, headers, []byte(paymentBody), false)
	host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
	host.CallOnResponseBody(id, []byte(respBody), true)
	c := nthCallout(t, host, id, 1, api.PathComplete)
	var result any = api.Result{Outcome: "completed"}
	if completeStatus != 200 {
		result = api.Problem{Title: "x", Status: completeStatus}
	}
	answer(t, host, c, completeStatus, result)
	host.CompleteHttpContext(id)
	return reserved
}

// edgeSlot is the shared-data key of the demo route's record for scope
// and key k1 (1024 slots, the default).
func edgeSlot(scope string) string {
	id := newEdgeID("idemgate_controlplane", scope, "k1")
	return id.slotKey(1024)
}

// TestEdgeCache: completed responses are replayed, and reuses with another
// payload refused, by the edge cache without a callout; what must not be
// cached is not.
func TestEdgeCache(t *testing.T) {
	otherPrincipal := [][2]string{
		{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"},
		{"content-type", "application/json"}, {"authorization", "Bearer bob-secret"}, keyK1,
	}
	tests := []struct {
		name     string
		config   []string
		fill     func(t *testing.T, host proxytest.HostEmulator) // the first request
		headers  [][2]string                                     // of the second request; nil: paymentHeaders(keyK1)
		body     string                                          // of the second request; "": paymentBody
		callout  bool                                            // the second request asks the control plane
		status   int                                             // else: its local response
		title    string                                          // of a problem; "": a replay of paymentResponse
		counters map[string]uint64
	}{
		{
			name: "replay after complete",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			status:   201,
			counters: map[string]uint64{"idemgate.replays_edge": 1, "idemgate.replays_controlplane": 0},
		},
		{
			name: "replay after a completed reserve answer",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				id := host.InitializeHttpContext()
				sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
				answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Completed,
					Response: &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(paymentResponse)}})
				if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 201 {
					t.Fatalf("first request: local response %v, want the control plane's replay", r)
				}
				host.CompleteHttpContext(id)
			},
			status:   201,
			counters: map[string]uint64{"idemgate.replays_edge": 1, "idemgate.replays_controlplane": 1},
		},
		{
			// A record about to expire at the control plane must not live
			// on at the edge for edge_cache_ttl: another gateway would
			// execute the key while this one replays it.
			name: "a completed answer's remaining life caps the entry",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				id := host.InitializeHttpContext()
				sendRequest(host, id, paymentHeaders(keyK1), []byte(paymentBody))
				answer(t, host, nthCallout(t, host, id, 0, api.PathReserve), 200, api.ReserveResponse{Outcome: api.Completed, ExpiresInMS: 1,
					Response: &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(paymentResponse)}})
				host.CompleteHttpContext(id)
				time.Sleep(20 * time.Millisecond) // past the record's 1 ms
			},
			callout: true,
		},
		{
			name: "another payload: 422 from the edge",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			body:     `{"amount":200,"currency":"EUR"}`,
			status:   422,
			title:    "Idempotency-Key is already used",
			counters: map[string]uint64{"idemgate.mismatches": 1, "idemgate.replays_edge": 0},
		},
		{
			name:   "on_duplicate reject: 409 from the edge",
			config: []string{`"on_duplicate": "replay"`, `"on_duplicate": "reject"`},
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			status: 409, title: "A request with this Idempotency-Key was already processed",
			counters: map[string]uint64{"idemgate.conflicts": 1},
		},
		{
			name: "expired entry: callout",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				reserved := completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
				key := edgeSlot(reserved.Scope)
				b, cas, err := proxywasm.GetSharedData(key)
				if err != nil {
					t.Fatalf("edge slot %s: %v, want the entry the complete filled", key, err)
				}
				e, ok := decodeEdgeEntry(b)
				if !ok {
					t.Fatalf("edge slot %s: undecodable %q", key, b)
				}
				e.expires = 1 // 1970
				if err := proxywasm.SetSharedData(key, e.encode(), cas); err != nil {
					t.Fatal(err)
				}
			},
			callout: true,
		},
		{
			// A fingerprint no request has: only a replay that never
			// compares fingerprints can replay.
			name: "identical retry: replayed on its bytes, not fingerprinted",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				reserved := completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
				editEdgeEntry(t, reserved.Scope, func(e *edgeEntry) { e.fingerprint = "sha256:not-this-request" })
			},
			status:   201,
			counters: map[string]uint64{"idemgate.replays_edge": 1, "idemgate.mismatches": 0},
		},
		{
			name: "body that canonicalizes equal: replayed",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			body:     ` { "currency": "EUR", "amount": 1.00e2 }`,
			status:   201,
			counters: map[string]uint64{"idemgate.replays_edge": 1, "idemgate.replays_controlplane": 0},
		},
		{
			name: "body that canonicalizes equal: fingerprints compared",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				reserved := completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
				editEdgeEntry(t, reserved.Scope, func(e *edgeEntry) { e.fingerprint = "sha256:not-this-request" })
			},
			body:   `{"currency":"EUR","amount":100}`,
			status: 422, title: "Idempotency-Key is already used",
			counters: map[string]uint64{"idemgate.mismatches": 1, "idemgate.replays_edge": 0},
		},
		{
			name: "same bytes, another path: 422",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			headers: [][2]string{
				{":method", "POST"}, {":path", "/payments?x=1"}, {":authority", "api.example.com"},
				{"content-type", "application/json"}, {"authorization", "Bearer alice-secret"}, keyK1,
			},
			status: 422, title: "Idempotency-Key is already used",
		},
		{
			// Without the digest the entry is 191 bytes, with it 223:
			// cached without it, so even an identical retry is
			// fingerprinted (and the planted fingerprint refuses it).
			name:   "request digest over edge_cache_max_entry_bytes: cached without it",
			config: []string{`"max_body_bytes": 1048576`, `"max_body_bytes": 1048576, "edge_cache_max_entry_bytes": 200`},
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				reserved := completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
				editEdgeEntry(t, reserved.Scope, func(e *edgeEntry) {
					if e.request != nil {
						t.Errorf("entry holds a %d-byte request digest over the limit", len(e.request))
					}
					e.fingerprint = "sha256:not-this-request"
				})
			},
			status: 422, title: "Idempotency-Key is already used",
		},
		{
			name:   "entry over edge_cache_max_entry_bytes: not cached",
			config: []string{`"max_body_bytes": 1048576`, `"max_body_bytes": 1048576, "edge_cache_max_entry_bytes": 300`},
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), strings.Repeat("x", 300), 200)
			},
			callout: true,
		},
		{
			name:   "edge_cache_ttl 0s: off",
			config: []string{`"max_body_bytes": 1048576`, `"max_body_bytes": 1048576, "edge_cache_ttl": "0s"`},
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			callout: true,
		},
		{
			name:   "edge_cache_slots 0: off",
			config: []string{`"routes": [`, `"edge_cache_slots": 0, "routes": [`},
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			callout: true,
		},
		{
			name: "complete failed: not cached",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 500)
			},
			callout: true,
		},
		{
			name: "another principal, same key: callout",
			fill: func(t *testing.T, host proxytest.HostEmulator) {
				completeOnce(t, host, paymentHeaders(keyK1), paymentResponse, 200)
			},
			headers: otherPrincipal,
			callout: true,
		},
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				host, reset := startHost(t, vm, withConfig(t, tc.config...))
				defer reset()
				tc.fill(t, host)

				headers, body := tc.headers, tc.body
				if headers == nil {
					headers = paymentHeaders(keyK1)
				}
				if body == "" {
					body = paymentBody
				}
				id := host.InitializeHttpContext()
				if a := sendRequest(host, id, headers, []byte(body)); a != types.ActionPause {
					t.Fatalf("second request action = %v, want ActionPause", a)
				}
				callouts := len(host.GetCalloutAttributesFromContext(id))
				r := host.GetSentLocalResponse(id)
				switch {
				case tc.callout:
					if callouts != 1 || r != nil {
						t.Fatalf("second request: %d callouts, local response %v; want a reserve and no answer yet", callouts, r)
					}
					nthCallout(t, host, id, 0, api.PathReserve)
					return
				case callouts != 0:
					t.Fatalf("second request: %d callouts, want none (answered at the edge)", callouts)
				case tc.title != "":
					checkProblem(t, r, tc.status, tc.title, "", "")
				default:
					checkReplay(t, r, &api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(paymentResponse)})
				}
				for name, want := range tc.counters {
					if got := counter(t, host, name); got != want {
						t.Errorf("%s = %d, want %d", name, got, want)
					}
				}
				host.CompleteHttpContext(id)
				if n := len(host.GetCalloutAttributesFromContext(id)); n != 0 {
					t.Errorf("callouts after the stream = %d, want none", n)
				}
			})
		}
	})
}

// TestEdgeFillAfterAnotherFill: a fill whose slot another record's fill
// took since the lookup (one slot: every record shares it) still fills
// it, after a CAS mismatch and a read.
func TestEdgeFillAfterAnotherFill(t *testing.T) {
	// Key k1 of three principals: three records.
	as := func(principal string) [][2]string {
		return [][2]string{
			{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"},
			{"content-type", "application/json"}, {"authorization", "Bearer " + principal}, keyK1,
		}
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := startHost(t, vm, withConfig(t, `"routes": [`, `"edge_cache_slots": 1, "routes": [`))
		defer reset()
		completeOnce(t, host, as("carol"), paymentResponse, 200) // the slot holds carol's

		id := host.InitializeHttpContext()
		acquire(t, host, id, as("alice"), []byte(paymentBody), false) // its lookup sees carol's
		completeOnce(t, host, as("bob"), paymentResponse, 200)        // the slot holds bob's
		host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}, {"content-type", "application/json"}}, false)
		host.CallOnResponseBody(id, []byte(paymentResponse), true)
		answer(t, host, nthCallout(t, host, id, 1, api.PathComplete), 200, api.Result{Outcome: "completed"})
		host.CompleteHttpContext(id)
		for _, l := range host.GetWarnLogs() {
			if strings.Contains(l, "edge cache") {
				t.Errorf("warning %q", l)
			}
		}

		retry := func(principal string) (int, *proxytest.LocalHttpResponse) {
			id := host.InitializeHttpContext()
			defer host.CompleteHttpContext(id)
			sendRequest(host, id, as(principal), []byte(paymentBody))
			return len(host.GetCalloutAttributesFromContext(id)), host.GetSentLocalResponse(id)
		}
		if n, r := retry("alice"); n != 0 || r == nil || r.StatusCode != 201 {
			t.Errorf("alice's retry: %d callouts, local response %v; want a replay from the edge", n, r)
		}
		if n, _ := retry("bob"); n != 1 {
			t.Errorf("bob's retry: %d callouts, want its reserve (alice's entry took the slot)", n)
		}
	})
}

// encode returns the entry's bytes in a buffer of their own, or nil when
// a length does not fit its field.
func (e *edgeEntry) encode() []byte {
	b, ok := e.appendEntry(nil)
	if !ok {
		return nil
	}
	return b
}

// editEdgeEntry rewrites the demo route's edge entry of scope and key k1.
func editEdgeEntry(t *testing.T, scope string, edit func(*edgeEntry)) {
	t.Helper()
	key := edgeSlot(scope)
	b, cas, err := proxywasm.GetSharedData(key)
	if err != nil {
		t.Fatalf("edge slot %s: %v, want the entry the complete filled", key, err)
	}
	e, ok := decodeEdgeEntry(b)
	if !ok {
		t.Fatalf("edge slot %s: undecodable %q", key, b)
	}
	edit(e)
	if err := proxywasm.SetSharedData(key, e.encode(), cas); err != nil {
		t.Fatal(err)
	}
}

// TestRequestImage: the image changes with every input of the fingerprint
// and with nothing else; requestImageSize is its length, requestDigest
// its SHA-256 (also when larger than the digest's reused buffer).
func TestRequestImage(t *testing.T) {
	base := canon.Request{Method: "POST", Target: "/p?a=1", ContentType: "application/json", Body: []byte(`{"a":1}`),
		Headers: [][2]string{{"content-type", "application/json"}, {"x-tenant", "t1"}, {"X-Tenant", "t2"}, {"x-trace", "1"}}}
	sel := canon.Selection{Include: []string{"a"}, Exclude: []string{"b"}, Headers: []string{"x-tenant"}}
	baseImage := requestImage(nil, &base, &sel)
	image := func(r canon.Request, s canon.Selection) string {
		b := requestImage(nil, &r, &s)
		if got, want := requestDigest(&r, &s), sha256.Sum256(b); got != want {
			t.Errorf("requestDigest = %x, SHA-256 of the image %x", got, want)
		}
		if n := requestImageSize(&r, &s); n != len(b) {
			t.Errorf("requestImageSize = %d, len(requestImage) = %d", n, len(b))
		}
		if !imageEqual(b, &r, &s) {
			t.Errorf("imageEqual(requestImage(r), r) = false")
		}
		if got, want := imageEqual(baseImage, &r, &s), string(b) == string(baseImage); got != want {
			t.Errorf("imageEqual(base image, r) = %v, byte comparison says %v", got, want)
		}
		for _, cut := range []int{1, len(b) / 2} {
			if imageEqual(b[:len(b)-cut], &r, &s) || imageEqual(append(slices.Clone(b), 0), &r, &s) {
				t.Errorf("imageEqual accepts a truncated or extended image")
			}
		}
		return string(b)
	}
	big := base
	big.Body = []byte(`{"a":"` + strings.Repeat("x", 2*maxDigestBuf) + `"}`)
	big.Target = "/" + strings.Repeat("t", maxDigestBuf)
	image(big, sel)
	want := image(base, sel)
	change := func(f func(r *canon.Request, s *canon.Selection)) string {
		r, s := base, sel
		r.Headers = slices.Clone(base.Headers)
		f(&r, &s)
		return image(r, s)
	}
	differ := map[string]func(r *canon.Request, s *canon.Selection){
		"method":          func(r *canon.Request, _ *canon.Selection) { r.Method = "PATCH" },
		"host":            func(r *canon.Request, _ *canon.Selection) { r.Host = "api-b" },
		"target":          func(r *canon.Request, _ *canon.Selection) { r.Target = "/p?a=2" },
		"content type":    func(r *canon.Request, _ *canon.Selection) { r.ContentType = "text/plain" },
		"body":            func(r *canon.Request, _ *canon.Selection) { r.Body = []byte(`{"a": 1}`) },
		"no body":         func(r *canon.Request, _ *canon.Selection) { r.Body = nil },
		"header value":    func(r *canon.Request, _ *canon.Selection) { r.Headers[2][1] = "t3" },
		"header dropped":  func(r *canon.Request, _ *canon.Selection) { r.Headers = r.Headers[:2] },
		"header order":    func(r *canon.Request, _ *canon.Selection) { r.Headers[1], r.Headers[2] = r.Headers[2], r.Headers[1] },
		"include":         func(_ *canon.Request, s *canon.Selection) { s.Include = []string{"b"} },
		"exclude":         func(_ *canon.Request, s *canon.Selection) { s.Exclude = nil },
		"headers":         func(_ *canon.Request, s *canon.Selection) { s.Headers = []string{"x-trace"} },
		"framing shift":   func(r *canon.Request, _ *canon.Selection) { r.Method, r.Target = "POST/p", "?a=1" },
		"value into body": func(r *canon.Request, _ *canon.Selection) { r.Headers[2][1] = "t2" + `{"a":1}`; r.Body = nil },
	}
	for name, f := range differ {
		if change(f) == want {
			t.Errorf("%s: same image", name)
		}
	}
	if got := change(func(r *canon.Request, _ *canon.Selection) { r.Headers[3][1] = "2" }); got != want {
		t.Errorf("an unselected header changed the image")
	}
}

// fakeShared is a shared-data store whose set fails with a CAS mismatch
// the first conflicts times, as when another worker writes between the
// read and the write. Otherwise it checks CAS values as Envoy does: a
// CAS of 0 writes whatever the slot holds.
type fakeShared struct {
	data      map[string][]byte
	cas       map[string]uint32
	conflicts int
	sets      int
	gets      int
	onGet     func() // runs after a get: a concurrent writer
}

func newFakeShared() *fakeShared {
	return &fakeShared{data: map[string][]byte{}, cas: map[string]uint32{}}
}

func (f *fakeShared) get(key string) ([]byte, uint32, error) {
	f.gets++
	v, ok := f.data[key]
	if !ok {
		return nil, 0, types.ErrorStatusNotFound
	}
	cas := f.cas[key]
	if f.onGet != nil {
		f.onGet()
	}
	return v, cas, nil
}

func (f *fakeShared) set(key string, v []byte, cas uint32) error {
	f.sets++
	if f.conflicts > 0 {
		f.conflicts--
		f.cas[key]++
		return types.ErrorStatusCasMismatch
	}
	if _, ok := f.data[key]; ok && cas != 0 && f.cas[key] != cas {
		return types.ErrorStatusCasMismatch
	}
	f.write(key, v)
	return nil
}

// write stores v as any writer does (another worker, say): a new CAS.
func (f *fakeShared) write(key string, v []byte) {
	f.data[key] = v
	f.cas[key]++
}

func TestEdgeStoreCAS(t *testing.T) {
	id := newEdgeID("c", "sha256:scope", "k1")
	other := newEdgeID("c", "sha256:scope", "k2")
	entry := func(id edgeID, expires int64) []byte {
		e := edgeEntry{id: id, expires: expires, fingerprint: "sha256:fp", resp: api.StoredResponse{Status: 201, Body: []byte("b")}}
		return e.encode()
	}
	t.Run("conflicts then success", func(t *testing.T) {
		f := newFakeShared()
		f.conflicts = 3
		if err := edgeStore(f, id.slotKey(16), &id, slotSeen{}, entry(id, 100), 100, 0); err != nil {
			t.Fatal(err)
		}
		if f.sets != 4 {
			t.Errorf("sets = %d, want 4 (3 conflicts, then the write)", f.sets)
		}
		if e, _ := edgeLookup(f, id.slotKey(16), &id, 50, 0); e == nil || e.expires != 100 {
			t.Errorf("lookup = %+v, want the entry", e)
		}
	})
	t.Run("conflicts on every retry", func(t *testing.T) {
		f := newFakeShared()
		f.conflicts = edgeCASRetries
		if err := edgeStore(f, id.slotKey(16), &id, slotSeen{}, entry(id, 100), 100, 0); !errors.Is(err, errEdgeCASRetries) {
			t.Fatalf("err = %v, want errEdgeCASRetries", err)
		}
		if f.sets != edgeCASRetries {
			t.Errorf("sets = %d, want %d (bounded)", f.sets, edgeCASRetries)
		}
	})
	t.Run("a concurrent writer changes the slot between get and set", func(t *testing.T) {
		f := newFakeShared()
		key := id.slotKey(16)
		f.write(key, entry(other, 100))
		writes := 0
		f.onGet = func() {
			if writes == 0 { // another worker fills the same record first, for longer
				writes++
				f.write(key, entry(id, 500))
			}
		}
		if err := edgeStore(f, key, &id, slotSeen{}, entry(id, 200), 200, 0); err != nil {
			t.Fatal(err)
		}
		if f.sets != 1 {
			t.Errorf("sets = %d, want 1: the write after the conflict is skipped (the slot already holds the record, for longer)", f.sets)
		}
		if e, _ := edgeLookup(f, key, &id, 0, 0); e == nil || e.expires != 500 {
			t.Errorf("lookup = %+v, want the other worker's entry (expires 500)", e)
		}
	})
	t.Run("an entry of another edge epoch: a miss, and overwritten", func(t *testing.T) {
		f := newFakeShared()
		key := id.slotKey(16)
		old := edgeEntry{id: id, expires: 500, epoch: 1, fingerprint: "sha256:fp", resp: api.StoredResponse{Status: 201}}
		f.write(key, old.encode())
		if e, _ := edgeLookup(f, key, &id, 0, 1); e == nil || e.epoch != 1 {
			t.Errorf("lookup under epoch 1 = %+v, want the entry", e)
		}
		e, seen := edgeLookup(f, key, &id, 0, 2)
		if e != nil {
			t.Errorf("lookup under epoch 2 = %+v, want a miss", e)
		}
		fresh := edgeEntry{id: id, expires: 200, epoch: 2, fingerprint: "sha256:fp", resp: api.StoredResponse{Status: 201}}
		if err := edgeStore(f, key, &id, seen, fresh.encode(), 200, 2); err != nil {
			t.Fatal(err)
		}
		if e, _ := edgeLookup(f, key, &id, 0, 2); e == nil || e.expires != 200 {
			t.Errorf("lookup under epoch 2 after the fill = %+v, want the new entry, though the old one lasted longer", e)
		}
	})
	t.Run("other error", func(t *testing.T) {
		f := newFakeShared()
		if err := edgeStore(errShared{f}, id.slotKey(16), &id, slotSeen{}, entry(id, 100), 100, 0); !errors.Is(err, types.ErrorStatusBadArgument) {
			t.Fatalf("err = %v, want the host's error", err)
		}
	})
}

// TestEdgeStoreFromLookup: a fill starts its compare-and-swap from what
// the stream's lookup saw of the slot; a write in between, by anyone,
// must still be detected (the slot read again, the decision taken anew),
// and a lookup that found the slot empty (CAS 0: unconditional) must not
// stand for a read.
func TestEdgeStoreFromLookup(t *testing.T) {
	id := newEdgeID("c", "sha256:scope", "k1")
	other := newEdgeID("c", "sha256:scope", "k2")
	key := id.slotKey(16)
	entry := func(id edgeID, expires int64) []byte {
		e := edgeEntry{id: id, expires: expires, fingerprint: "sha256:fp", resp: api.StoredResponse{Status: 201, Body: []byte("b")}}
		return e.encode()
	}
	// The lookup runs at 50; the fill writes an entry of id expiring at 200.
	tests := []struct {
		name    string
		before  []byte // the slot at the lookup; nil: empty
		between []byte // written by another worker between lookup and fill; nil: nothing
		sets    int    // the fill's writes, failed ones included
		gets    int    // the fill's reads
		want    edgeID // the slot's entry after the fill
		expires int64
	}{
		{name: "another record's entry, unchanged: one write, no read", before: entry(other, 100), sets: 1, gets: 0, want: id, expires: 200},
		{name: "the record's expired entry, unchanged: one write, no read", before: entry(id, 40), sets: 1, gets: 0, want: id, expires: 200},
		{name: "another record written since: CAS mismatch, read, written", before: entry(other, 100), between: entry(other, 300), sets: 2, gets: 1, want: id, expires: 200},
		{name: "the record written since, for longer: CAS mismatch, read, left", before: entry(other, 100), between: entry(id, 500), sets: 1, gets: 1, want: id, expires: 500},
		{name: "the record written since, for less: CAS mismatch, read, written", before: entry(other, 100), between: entry(id, 150), sets: 2, gets: 1, want: id, expires: 200},
		{name: "empty, unchanged: read, written", sets: 1, gets: 1, want: id, expires: 200},
		{name: "empty, the record written since, for longer: read, left", between: entry(id, 500), sets: 0, gets: 1, want: id, expires: 500},
		{name: "empty, another record written since: read, written", between: entry(other, 300), sets: 1, gets: 1, want: id, expires: 200},
		// A live header with an unreadable rest: the lookup misses, and
		// the fill leaves it, as a fill that reads the slot does.
		{name: "the record's live entry, unreadable: left", before: entry(id, 500)[:edgeFixedSize], sets: 0, gets: 0, want: id, expires: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeShared()
			if tc.before != nil {
				f.write(key, tc.before)
			}
			e, seen := edgeLookup(f, key, &id, 50, 0)
			if e != nil {
				t.Fatalf("lookup = %+v, want a miss", e)
			}
			if tc.between != nil {
				f.write(key, tc.between)
			}
			f.gets, f.sets = 0, 0
			if err := edgeStore(f, key, &id, seen, entry(id, 200), 200, 0); err != nil {
				t.Fatal(err)
			}
			if f.sets != tc.sets || f.gets != tc.gets {
				t.Errorf("fill: %d writes, %d reads; want %d, %d", f.sets, f.gets, tc.sets, tc.gets)
			}
			got, exp, _, ok := decodeEdgeHeader(f.data[key])
			if !ok || got != tc.want || exp != tc.expires {
				t.Errorf("slot holds id %x… expiring %d (ok %v), want id %x… expiring %d", got[:4], exp, ok, tc.want[:4], tc.expires)
			}
		})
	}
}

type errShared struct{ *fakeShared }

func (errShared) set(string, []byte, uint32) error { return types.ErrorStatusBadArgument }

func TestEdgeEntryEncoding(t *testing.T) {
	e := edgeEntry{
		id: newEdgeID("c", "s", "k"), expires: 1 << 62, fingerprint: "sha256:abc",
		resp: api.StoredResponse{Status: 201, Headers: api.Headers{{"content-type", "application/json"}, {"x-empty", ""}}, Body: []byte(`{"a":1}`)},
	}
	b := e.encode()
	if len(b) != edgeEntrySize(e.fingerprint, nil, &e.resp) {
		t.Errorf("encoded %d bytes, edgeEntrySize says %d", len(b), edgeEntrySize(e.fingerprint, nil, &e.resp))
	}
	withImage := e
	withImage.request = []byte("image bytes")
	if got, ok := decodeEdgeEntry(withImage.encode()); !ok || !reflect.DeepEqual(*got, withImage) {
		t.Errorf("decode = %+v, %v; want %+v", got, ok, withImage)
	}
	if n, want := len(withImage.encode()), edgeEntrySize(e.fingerprint, withImage.request, &e.resp); n != want || n != len(b)+len("image bytes") {
		t.Errorf("with an image: encoded %d bytes, edgeEntrySize says %d; want the image counted", n, want)
	}
	got, ok := decodeEdgeEntry(b)
	if !ok || !reflect.DeepEqual(*got, e) {
		t.Fatalf("decode = %+v, %v; want %+v", got, ok, e)
	}
	omitted := edgeEntry{id: e.id, expires: 5, resp: api.StoredResponse{Status: 201, BodyOmitted: true}}
	if got, ok := decodeEdgeEntry(omitted.encode()); !ok || !reflect.DeepEqual(*got, omitted) {
		t.Errorf("decode = %+v, %v; want %+v", got, ok, omitted)
	}
	for n := range len(b) {
		if _, ok := decodeEdgeEntry(b[:n]); ok {
			t.Fatalf("a %d-byte prefix of a %d-byte entry decodes", n, len(b))
		}
	}
	if _, ok := decodeEdgeEntry(append(b, 0)); ok {
		t.Error("an entry with a trailing byte decodes")
	}
	// edgeFill appends to a reused buffer: after what it holds.
	if got, ok := e.appendEntry(append(make([]byte, 0, 8), "prefix"...)); !ok || string(got) != "prefix"+string(b) {
		t.Errorf("appendEntry(prefix) = %q, %v; want the prefix, then the entry", got, ok)
	}
}

// TestEdgeEntryLimits: an entry with a length its field cannot hold is
// not encoded (not cached); the longest that fits is, and decodes back.
func TestEdgeEntryLimits(t *testing.T) {
	base := edgeEntry{id: newEdgeID("c", "s", "k"), expires: 9, fingerprint: "f", resp: api.StoredResponse{Status: 200}}
	long := strings.Repeat("a", 0x10000)
	tooMany := make(api.Headers, 0x10000)
	refused := map[string]func(e *edgeEntry){
		"fingerprint":  func(e *edgeEntry) { e.fingerprint = long },
		"header name":  func(e *edgeEntry) { e.resp.Headers = api.Headers{{"ok", "v"}, {long, "v"}} },
		"header count": func(e *edgeEntry) { e.resp.Headers = tooMany },
		"status":       func(e *edgeEntry) { e.resp.Status = 0x10000 },
		"negative":     func(e *edgeEntry) { e.resp.Status = -1 },
	}
	for name, f := range refused {
		e := base
		f(&e)
		if _, ok := e.appendEntry(nil); ok {
			t.Errorf("%s: encoded, want refused", name)
		}
	}
	e := base
	e.fingerprint = long[:0xffff]
	e.resp.Headers = api.Headers{{long[:0xffff], long}}
	if got, ok := decodeEdgeEntry(e.encode()); !ok || !reflect.DeepEqual(*got, e) {
		t.Errorf("the longest fingerprint and header name: decode = %v", ok)
	}
}
