//go:build !wasm

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// withConfig returns demoConfig with each old string replaced by new, in
// pairs; it fails loudly when an old string is absent.
func withConfig(t *testing.T, pairs ...string) string {
	t.Helper()
	c := demoConfig
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(c, pairs[i]) {
			t.Fatalf("demoConfig has no %q", pairs[i])
		}
		c = strings.Replace(c, pairs[i], pairs[i+1], 1)
	}
	return c
}

// paymentHeaders are a governed request's headers (lower case, as the
// emulator keeps them) with extra appended.
func paymentHeaders(extra ...[2]string) [][2]string {
	return append([][2]string{
		{":method", "POST"}, {":path", "/payments"}, {":authority", "api.example.com"},
		{"content-type", "application/json"}, {"authorization", "Bearer alice-secret"},
	}, extra...)
}

var keyK1 = [2]string{"idempotency-key", `"k1"`}

// startHost starts the emulator and the plugin with config.
func startHost(t testing.TB, vm types.VMContext, config string) (proxytest.HostEmulator, func()) {
	t.Helper()
	host, reset := newHost(t, vm, config)
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		reset()
		t.Fatalf("StartPlugin() = %v, want OK; error logs %q", st, host.GetErrorLogs())
	}
	// The first tick polls the edge epoch: the edge cache serves once it
	// is known.
	host.Tick()
	answerEpochPolls(t, host)
	return host, reset
}

// pluginCallouts returns the callouts the plugin context dispatched (from
// its tick, answered to it) to path, in order, with their index among all
// of the plugin context's callouts. The index names a callout: the
// emulator reuses callout IDs once answered.
func pluginCallouts(host proxytest.HostEmulator, path string) ([]proxytest.HttpCalloutAttribute, []int) {
	var out []proxytest.HttpCalloutAttribute
	var idx []int
	for i, c := range host.GetCalloutAttributesFromContext(proxytest.PluginContextID) {
		if p, _ := header(c.Headers, ":path"); p == path {
			out = append(out, c)
			idx = append(idx, i)
		}
	}
	return out, idx
}

// hostState is what the tests' helpers keep per emulator: the plugin
// context's callouts answered (by index), and how edge-epoch polls are
// answered (by tickUntil and answerEpochPolls).
type hostState struct {
	answered    map[int]bool
	epoch       int64
	epochStatus int
}

var hostStates = map[proxytest.HostEmulator]*hostState{}

func stateOf(host proxytest.HostEmulator) *hostState {
	s := hostStates[host]
	if s == nil {
		s = &hostState{answered: map[int]bool{}, epoch: 1, epochStatus: 200}
		hostStates[host] = s
	}
	return s
}

// nextPluginCallout returns the first plugin-context callout to path not
// yet answered through answerPlugin, and its index.
func nextPluginCallout(host proxytest.HostEmulator, path string) (proxytest.HttpCalloutAttribute, int, bool) {
	cs, idx := pluginCallouts(host, path)
	for i, c := range cs {
		if !stateOf(host).answered[idx[i]] {
			return c, idx[i], true
		}
	}
	return proxytest.HttpCalloutAttribute{}, -1, false
}

// answerPlugin answers the plugin-context callout at index i. The
// emulator hands out callout IDs as "how many are pending", so answering
// one while a newer one is pending makes the next dispatch reuse the
// newer one's ID: tests answer the newest pending callout first.
func answerPlugin(t testing.TB, host proxytest.HostEmulator, i int, status int, v any) {
	t.Helper()
	stateOf(host).answered[i] = true
	answer(t, host, host.GetCalloutAttributesFromContext(proxytest.PluginContextID)[i], status, v)
}

// answerEpochPolls answers every pending edge-epoch poll as the host's
// state says (epoch 1, 200 unless a test changed it); it returns how
// many it answered.
func answerEpochPolls(t testing.TB, host proxytest.HostEmulator) int {
	t.Helper()
	st := stateOf(host)
	n := 0
	for {
		c, i, ok := nextPluginCallout(host, api.PathEdgeEpoch)
		if !ok {
			return n
		}
		if m, _ := header(c.Headers, ":method"); m != "GET" {
			t.Errorf("edge epoch poll method = %q, want GET", m)
		}
		var v any = api.EdgeEpoch{Epoch: st.epoch}
		if st.epochStatus != 200 {
			v = nil
		}
		answerPlugin(t, host, i, st.epochStatus, v)
		n++
	}
}

// sendRequest delivers a request with its body in one chunk (none when
// body is nil) and returns the action of the last callback.
func sendRequest(host proxytest.HostEmulator, id uint32, headers [][2]string, body []byte) types.Action {
	a := host.CallOnRequestHeaders(id, headers, body == nil)
	if body == nil || a != types.ActionPause {
		return a
	}
	return host.CallOnRequestBody(id, body, true)
}

// nthCallout returns the n-th (0-based) callout of context id, checking
// the cluster and the headers every control-plane call carries.
func nthCallout(t *testing.T, host proxytest.HostEmulator, id uint32, n int, wantPath string) proxytest.HttpCalloutAttribute {
	t.Helper()
	all := host.GetCalloutAttributesFromContext(id)
	if len(all) <= n {
		t.Fatalf("callouts = %d, want at least %d (the %s)", len(all), n+1, wantPath)
	}
	c := all[n]
	if c.Upstream != "idemgate_controlplane" {
		t.Errorf("callout %d cluster = %q, want idemgate_controlplane", n, c.Upstream)
	}
	want := map[string]string{
		":method": "POST", ":path": wantPath, ":authority": "idemgate-controlplane",
		"content-type": "application/json", "authorization": "Bearer demo-token-change-me",
	}
	for name, v := range want {
		if got, _ := header(c.Headers, name); got != v {
			t.Errorf("callout %d header %s = %q, want %q", n, name, got, v)
		}
	}
	return c
}

// decodeStrict decodes a callout body into v, refusing unknown fields, as
// the control plane does.
func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode callout body %s: %v", body, err)
	}
}

// answer answers callout c with a status and a JSON body (none when v is
// nil); status 0 answers with no headers, as Envoy does on a timeout.
func answer(t testing.TB, host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute, status int, v any) {
	t.Helper()
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var headers [][2]string
	if status != 0 {
		headers = [][2]string{{":status", itoa(status)}, {"content-type", "application/json"}}
	}
	host.CallOnHttpCallResponse(c.CalloutID, headers, nil, body)
}

// tickFor ticks the plugin until cond holds, at most 5 s; see tickUntil.
func tickFor(t *testing.T, host proxytest.HostEmulator, what string, cond func() bool) {
	t.Helper()
	if !tickUntil(t, host, cond) {
		t.Fatalf("no %s within 5 s of ticks", what)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// checkProblem checks a local response: status, problem+json body with
// the title, a detail containing detail, and Retry-After when wanted.
func checkProblem(t *testing.T, r *proxytest.LocalHttpResponse, status int, title, detail, retryAfter string) {
	t.Helper()
	if r == nil {
		t.Fatalf("no local response, want %d %q", status, title)
	}
	if int(r.StatusCode) != status {
		t.Errorf("status = %d, want %d (body %s)", r.StatusCode, status, r.Data)
	}
	if ct, _ := header(r.Headers, "content-type"); ct != "application/problem+json" {
		t.Errorf("content-type = %q, want application/problem+json", ct)
	}
	var p api.Problem
	if err := json.Unmarshal(r.Data, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.Data, err)
	}
	if p.Title != title || p.Status != status || !strings.HasPrefix(p.Type, "urn:idemgate:problem:") {
		t.Errorf("problem = %+v, want title %q status %d", p, title, status)
	}
	if !strings.Contains(p.Detail, detail) {
		t.Errorf("problem detail = %q, want it to contain %q", p.Detail, detail)
	}
	got, n := header(r.Headers, "retry-after")
	if retryAfter == "" && n != 0 || retryAfter != "" && got != retryAfter {
		t.Errorf("retry-after = %q (%d), want %q", got, n, retryAfter)
	}
}

func counter(t *testing.T, host proxytest.HostEmulator, name string) uint64 {
	t.Helper()
	v, err := host.GetCounterMetric(name)
	if err != nil {
		t.Fatalf("counter %s: %v", name, err)
	}
	return v
}
