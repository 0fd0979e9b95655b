package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

const holderA = "holderA_0123456789abcdef"

// TestRequestValidation: what the edge refuses with 400 problem+json
// before any store call.
func TestRequestValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, path, body, want string
	}{
		{"duplicate top-level member", api.PathReserve,
			`{"scope":"s","key":"k","fingerprint":"a","fingerprint":"b"}`, `duplicate member "fingerprint"`},
		{"duplicate nested member", api.PathComplete,
			`{"scope":"s","key":"k","token":"1.x","response":{"status":200,"status":500}}`, `duplicate member "response.status"`},
		{"duplicate member spelled with an escape", api.PathRelease,
			`{"scope":"s","key":"k","token":"1.x","t\u006fken":"1.y"}`, `duplicate member "token"`},
		{"unknown on_indeterminate", api.PathReserve,
			`{"scope":"s","key":"k","fingerprint":"a","on_indeterminate":"takeover"}`, "on_indeterminate"},
		{"short holder", api.PathReserve,
			`{"scope":"s","key":"k","fingerprint":"a","holder":"abc"}`, "holder is 3 bytes"},
		{"holder with a dot", api.PathReserve,
			`{"scope":"s","key":"k","fingerprint":"a","holder":"aaaaaaaa.aaaaaaaa"}`, "outside [A-Za-z0-9_-]"},
		{"release with token and holder", api.PathRelease,
			`{"scope":"s","key":"k","token":"1.x","holder":"` + holderA + `"}`, "exactly one of token and holder"},
		{"release with neither", api.PathRelease,
			`{"scope":"s","key":"k"}`, "exactly one of token and holder"},
		{"release by a malformed holder", api.PathRelease,
			`{"scope":"s","key":"k","holder":"x y"}`, "holder"},
		{"abandon takes no holder", api.PathAbandon,
			`{"scope":"s","key":"k","holder":"` + holderA + `"}`, `unknown field "holder"`},
		{"status over 999", api.PathComplete,
			`{"scope":"s","key":"k","token":"1.x","response":{"status":1000}}`, "three-digit"},
		{"status under 100", api.PathComplete,
			`{"scope":"s","key":"k","token":"1.x","response":{"status":99}}`, "three-digit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(http.MethodPost, tt.path, tt.body)
			p := problemOf(t, resp, body, http.StatusBadRequest)
			if !strings.Contains(p.Detail, tt.want) {
				t.Errorf("detail %q, want it to contain %q", p.Detail, tt.want)
			}
		})
	}
}

// TestStatusOver599IsStored: an upstream's 600 is an answer; it is stored
// and replayed, never refused (which left the key to be taken over).
func TestStatusOver599IsStored(t *testing.T) {
	e := newEnv(t)
	tok := e.acquire("s", "k", "fp")
	e.completeWith("s", "k", tok, api.StoredResponse{Status: 600})
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Completed || r.Response == nil || r.Response.Status != 600 {
		t.Fatalf("replay = %+v, want the stored 600", r)
	}
}

// TestReleaseByHolder: a filter that never saw its reserve's answer
// releases by the holder id it sent; its reserve, should it arrive later,
// acquires nothing.
func TestReleaseByHolder(t *testing.T) {
	e := newEnv(t)
	var out api.Result
	e.call(http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "late", Holder: holderA}, http.StatusOK, &out)
	if out.Outcome != "released" {
		t.Errorf("release by holder = %+v, want released", out)
	}
	var res api.ReserveResponse
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "late", Fingerprint: "fp", Holder: holderA}, http.StatusOK, &res)
	if res.Outcome != api.InProgress || res.Token != "" || res.LeaseRemainingMS <= 0 {
		t.Errorf("the fenced holder's reserve = %+v, want in_progress without a token", res)
	}
	// Anyone else acquires.
	e.acquire("s", "late", "fp")

	// A holder that holds the record frees it.
	res = api.ReserveResponse{}
	const holderB = "holderB_0123456789abcdef"
	e.call(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "held", Fingerprint: "fp", Holder: holderB}, http.StatusOK, &res)
	if res.Outcome != api.Acquired || !strings.HasSuffix(res.Token, "."+holderB) {
		t.Fatalf("reserve with a holder = %+v, want acquired, token ending .%s", res, holderB)
	}
	e.call(http.MethodPost, api.PathRelease, api.ReleaseRequest{Scope: "s", Key: "held", Holder: holderB}, http.StatusOK, &out)
	resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", "held"), nil)
	problemOf(t, resp, body, http.StatusNotFound)

	m := metricsText(t, e)
	for _, want := range []string{
		`idemgate_operations_total{op="release",outcome="fenced"} 1`,
		`idemgate_operations_total{op="release",outcome="released"} 1`,
		`idemgate_operations_total{op="reserve",outcome="fenced"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func edgeEpoch(t *testing.T, e *env) int64 {
	t.Helper()
	var ep api.EdgeEpoch
	e.call(http.MethodGet, api.PathEdgeEpoch, nil, http.StatusOK, &ep)
	return ep.Epoch
}

// TestEdgeEpoch: every admin delete or release (not a dry run, not a
// refused release) changes the epoch the filters poll, also when the
// record was already gone.
func TestEdgeEpoch(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.opt.AdminToken = adminToken })
	if n := edgeEpoch(t, e); n != 0 {
		t.Fatalf("epoch at start = %d, want 0", n)
	}
	admin := func(method, path string, want int) {
		t.Helper()
		e.token = adminToken
		defer func() { e.token = token }()
		e.call(method, path, nil, want, nil)
	}
	tok := e.acquire("s", "done", "fp")
	e.completeWith("s", "done", tok, api.StoredResponse{Status: 201})
	e.acquire("s", "held", "fp")
	steps := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantEpoch  int64
	}{
		{"delete dry run", http.MethodDelete, api.PathAdminKeys + query("s", "done", "dry_run=1"), http.StatusOK, 0},
		{"release of a completed record is refused", http.MethodPost, api.PathAdminRelease + query("s", "done"), http.StatusConflict, 0},
		{"delete", http.MethodDelete, api.PathAdminKeys + query("s", "done"), http.StatusOK, 1},
		{"delete again (absent)", http.MethodDelete, api.PathAdminKeys + query("s", "done"), http.StatusOK, 2},
		{"release dry run", http.MethodPost, api.PathAdminRelease + query("s", "held", "dry_run=1"), http.StatusOK, 2},
		{"release", http.MethodPost, api.PathAdminRelease + query("s", "held"), http.StatusOK, 3},
		{"release again (absent)", http.MethodPost, api.PathAdminRelease + query("s", "held"), http.StatusOK, 4},
	}
	for _, st := range steps {
		admin(st.method, st.path, st.wantStatus)
		if n := edgeEpoch(t, e); n != st.wantEpoch {
			t.Fatalf("%s: epoch %d, want %d", st.name, n, st.wantEpoch)
		}
	}
	// The filter's token reads it; no token does not.
	e.token = ""
	resp, body := e.do(http.MethodGet, api.PathEdgeEpoch, nil)
	problemOf(t, resp, body, http.StatusUnauthorized)
	e.token = token
	m := metricsText(t, e)
	for _, want := range []string{`idemgate_edge_epoch_bumps_total{result="ok"} 4`, `idemgate_edge_epoch 4`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// failingBump is a store whose edge-epoch bump fails.
type failingBump struct{ server.Store }

func (failingBump) BumpEdgeEpoch(context.Context) (int64, error) {
	return 0, fmt.Errorf("store: bump edge epoch: %w: %w", store.ErrUnavailable, errors.New("connection reset"))
}

// TestEdgeEpochBumpFails: the record changed but the edges were not told:
// 503 saying so, and that a retry is safe.
func TestEdgeEpochBumpFails(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.wrap = func(st server.Store) server.Store { return failingBump{st} } })
	e.acquire("s", "k", "fp")
	for _, c := range []struct{ method, path string }{
		{http.MethodDelete, api.PathAdminKeys + query("s", "k")},
		{http.MethodPost, api.PathAdminRelease + query("s", "k")},
	} {
		resp, body := e.do(c.method, c.path, nil)
		p := problemOf(t, resp, body, http.StatusServiceUnavailable)
		if p.Type != "urn:idemgate:problem:edges-not-told" || !strings.Contains(p.Detail, "retrying this request is safe") {
			t.Errorf("%s %s: problem %+v", c.method, c.path, p)
		}
	}
	if !strings.Contains(metricsText(t, e), `idemgate_edge_epoch_bumps_total{result="failed"} 2`) {
		t.Error("failed bumps not counted")
	}
}

// TestAdminList: the listing endpoint pages through records of one state,
// never with bodies, and refuses what it does not know.
func TestAdminList(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 7; i++ {
		tok := e.acquire("tenant", fmt.Sprintf("k%d", i), "fp")
		if i%2 == 0 {
			e.call(http.MethodPost, api.PathAbandon, api.AbandonRequest{Scope: "tenant", Key: fmt.Sprintf("k%d", i), Token: tok}, http.StatusOK, nil)
		}
	}
	e.acquire("other", "k", "fp")
	got := map[string]api.State{}
	cursor := ""
	for page := 0; page < 50; page++ {
		path := api.PathAdminKeyList + "?state=indeterminate&scope=tenant&limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var kl api.KeyList
		e.call(http.MethodGet, path, nil, http.StatusOK, &kl)
		for _, r := range kl.Records {
			if r.Response != nil || r.Scope != "tenant" {
				t.Fatalf("listed %+v", r)
			}
			got[r.Key] = r.State
		}
		if cursor = kl.Cursor; cursor == "" {
			break
		}
	}
	if len(got) != 4 || got["k0"] != api.StateIndeterminate || got["k6"] != api.StateIndeterminate {
		t.Errorf("listed %v, want k0 k2 k4 k6 indeterminate", got)
	}
	var kl api.KeyList
	e.call(http.MethodGet, api.PathAdminKeyList+"?state=in_progress", nil, http.StatusOK, &kl)
	if len(kl.Records) != 4 || kl.Cursor != "" {
		t.Errorf("in_progress listing %+v, want 4 records in one page", kl)
	}
	for _, q := range []string{"", "?state=completed", "?state=in_progress&limit=0", "?state=in_progress&limit=1001",
		"?state=in_progress&bogus=1", "?state=in_progress&state=indeterminate", "?state=in_progress&cursor=zz", "?state=in_progress&scope="} {
		resp, body := e.do(http.MethodGet, api.PathAdminKeyList+q, nil)
		problemOf(t, resp, body, http.StatusBadRequest)
	}
}
