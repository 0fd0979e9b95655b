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
	return host, reset
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
func answer(t *testing.T, host proxytest.HostEmulator, c proxytest.HttpCalloutAttribute, status int, v any) {
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
