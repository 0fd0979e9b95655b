package upstream

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, body string, hdr map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/payments", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A fresh transport per request: a dropped connection must not be
	// retried on another one.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func executions(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := http.Get(url + "/__executions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Count int64 }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Count
}

func TestPayments(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		hdr        map[string]string
		wantStatus int
		wantExec   int64  // executions added
		wantInBody string // substring of the answer
		// notExecuted: the answer carries the not-executed mark
		notExecuted bool
	}{
		{"executes", `{"amount":1000,"currency":"EUR"}`, nil, 201, 1, `"currency":"EUR"`, false},
		{"keeps members verbatim", `{"amount":1.50e3,"note":"\u00e9"}`, nil, 201, 1, `"amount":1.50e3`, false},
		{"overwrites a client id", `{"id":"mine"}`, nil, 201, 1, `"id":"pay_`, false},
		{"delay", `{"amount":1}`, map[string]string{HeaderDelay: "50"}, 201, 1, `"amount":1`, false},
		{"status without executing", `{"amount":1}`, map[string]string{HeaderStatus: "503"}, 503, 0, `X-Demo-Status`, true},
		{"status skips body checks", `not json`, map[string]string{HeaderStatus: "429"}, 429, 0, ``, true},
		{"status 2xx is marked too", `{"amount":1}`, map[string]string{HeaderStatus: "200"}, 200, 0, `not executed`, true},
		{"status over 599", `{"amount":1}`, map[string]string{HeaderStatus: "999"}, 999, 0, ``, true},
		{"status after a delay", `{"amount":1}`, map[string]string{HeaderStatus: "503", HeaderDelay: "20"}, 503, 0, ``, true},
		{"fail after executing", `{"amount":1}`, map[string]string{HeaderFailAfter: "500"}, 500, 1, `"id":"pay_`, false},
		{"fail after 503", `{"amount":1}`, map[string]string{HeaderFailAfter: "503"}, 503, 1, HeaderFailAfter, false},
		{"fail after with status 600", `{"amount":1}`, map[string]string{HeaderFailAfter: "600"}, 600, 1, `"status":600`, false},
		{"fail after with a delay", `{"amount":1}`, map[string]string{HeaderFailAfter: "502", HeaderDelay: "20"}, 502, 1, `"id":"pay_`, false},
		{"fail after checks the body", `{"amount":`, map[string]string{HeaderFailAfter: "500"}, 400, 0, `not a JSON object`, false},
		{"pad", `{"amount":1}`, map[string]string{HeaderPad: "10"}, 201, 1, `"pad":"xxxxxxxxxx"`, false},
		{"pad 0", `{"amount":1}`, map[string]string{HeaderPad: "0"}, 201, 1, `"amount":1`, false},
		{"invalid JSON", `{"amount":`, nil, 400, 0, `not a JSON object`, false},
		{"array", `[1,2]`, nil, 400, 0, `not a JSON object`, false},
		{"null", `null`, nil, 400, 0, `null`, false},
		{"trailing data", `{"a":1} {"b":2}`, nil, 400, 0, `after the object`, false},
		{"bad delay", `{}`, map[string]string{HeaderDelay: "soon"}, 400, 0, HeaderDelay, false},
		{"negative delay", `{}`, map[string]string{HeaderDelay: "-1"}, 400, 0, HeaderDelay, false},
		{"delay too long", `{}`, map[string]string{HeaderDelay: "60001"}, 400, 0, HeaderDelay, false},
		{"bad status", `{}`, map[string]string{HeaderStatus: "99"}, 400, 0, HeaderStatus, false},
		{"status not a number", `{}`, map[string]string{HeaderStatus: "5xx"}, 400, 0, HeaderStatus, false},
		{"bad drop", `{}`, map[string]string{HeaderDrop: "yes"}, 400, 0, HeaderDrop, false},
		{"status 1xx", `{}`, map[string]string{HeaderStatus: "103"}, 400, 0, HeaderStatus, false},
		{"status 1000", `{}`, map[string]string{HeaderStatus: "1000"}, 400, 0, HeaderStatus, false},
		{"bad fail after", `{}`, map[string]string{HeaderFailAfter: "oops"}, 400, 0, HeaderFailAfter, false},
		{"fail after 199", `{}`, map[string]string{HeaderFailAfter: "199"}, 400, 0, HeaderFailAfter, false},
		{"status and fail after", `{}`, map[string]string{HeaderStatus: "503", HeaderFailAfter: "500"}, 400, 0, HeaderFailAfter, false},
		{"status and drop", `{}`, map[string]string{HeaderStatus: "503", HeaderDrop: "1"}, 400, 0, HeaderDrop, false},
		{"status and pad", `{}`, map[string]string{HeaderStatus: "503", HeaderPad: "1"}, 400, 0, HeaderPad, false},
		{"drop and fail after", `{}`, map[string]string{HeaderDrop: "1", HeaderFailAfter: "500"}, 400, 0, HeaderFailAfter, false},
		{"bad pad", `{}`, map[string]string{HeaderPad: "-1"}, 400, 0, HeaderPad, false},
		{"pad too large", `{}`, map[string]string{HeaderPad: "16777217"}, 400, 0, HeaderPad, false},
		{"ledger label", `{"amount":1}`, map[string]string{HeaderLedger: "k1"}, 201, 1, `"amount":1`, false},
		{"ledger label too long", `{}`, map[string]string{HeaderLedger: strings.Repeat("k", 201)}, 400, 0, HeaderLedger, false},
	}
	srv := httptest.NewServer(New(nil, Options{}))
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := executions(t, srv.URL)
			resp, body, err := post(t, srv.URL, tt.body, tt.hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if got := executions(t, srv.URL) - before; got != tt.wantExec {
				t.Errorf("executions added = %d, want %d", got, tt.wantExec)
			}
			if !strings.Contains(string(body), tt.wantInBody) {
				t.Errorf("body %s does not contain %q", body, tt.wantInBody)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := resp.Header.Values(HeaderNotExecuted); tt.notExecuted != (len(got) == 1 && got[0] == "1") {
				t.Errorf("%s: %q, want marked not executed: %v", HeaderNotExecuted, got, tt.notExecuted)
			}
		})
	}
}

// The mark is the filter's default header name, in the form the filter
// reads it (lower case on the wire of HTTP/2 and in Envoy's header map).
func TestNotExecutedHeaderName(t *testing.T) {
	if got := strings.ToLower(HeaderNotExecuted); got != "idempotency-not-executed" {
		t.Errorf("HeaderNotExecuted = %q, want idempotency-not-executed", got)
	}
}

// An error after commit carries the id of the payment that ran, so a
// replay can be told from a second execution.
func TestFailAfterCarriesTheExecutedID(t *testing.T) {
	s := New(nil, Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, body, err := post(t, srv.URL, `{"amount":3}`, map[string]string{HeaderFailAfter: "500"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ ID string }
	if err := json.Unmarshal(body, &got); err != nil || got.ID != "pay_1" {
		t.Errorf("answer %s: id %q, want pay_1 (%v)", body, got.ID, err)
	}
}

func TestPaymentIDsCountExecutions(t *testing.T) {
	srv := httptest.NewServer(New(nil, Options{}))
	defer srv.Close()
	for want := 1; want <= 3; want++ {
		_, body, err := post(t, srv.URL, `{"amount":5}`, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		if id := got["id"]; id != "pay_"+string(rune('0'+want)) {
			t.Errorf("id = %v, want pay_%d", id, want)
		}
		if got["amount"] != 5.0 {
			t.Errorf("amount = %v, want 5", got["amount"])
		}
	}
	if n := executions(t, srv.URL); n != 3 {
		t.Errorf("count = %d, want 3", n)
	}
}

func TestDropExecutesAndAnswersNothing(t *testing.T) {
	s := New(nil, Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, _, err := post(t, srv.URL, `{"amount":1}`, map[string]string{HeaderDrop: "1"})
	if err == nil {
		t.Fatalf("got an answer %d, want the connection closed without one", resp.StatusCode)
	}
	if n := s.Executions(); n != 1 {
		t.Errorf("executions = %d, want 1", n)
	}
}

// X-Demo-Drop: reset ends the connection with a TCP reset, not a FIN.
func TestDropResetResets(t *testing.T) {
	s := New(nil, Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	_, _, err := post(t, srv.URL, `{"amount":1}`, map[string]string{HeaderDrop: "reset"})
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("error %v, want the connection reset", err)
	}
	if n := s.Executions(); n != 1 {
		t.Errorf("executions = %d, want 1", n)
	}
}

func TestRoutes(t *testing.T) {
	srv := httptest.NewServer(New(nil, Options{}))
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/payments", 405},
		{"POST", "/__executions", 405},
		{"GET", "/elsewhere", 404},
		{"GET", "/__executions", 200},
		{"GET", "/__ledger", 200},
		{"POST", "/__ledger", 405},
		{"GET", "/__idempotency/1.a", 405},
		{"POST", "/__idempotency/", 404},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

// The ledger counts executions per label, and only executions: a key that
// ran twice shows 2 under its label.
func TestLedgerCountsExecutionsPerLabel(t *testing.T) {
	srv := httptest.NewServer(New(nil, Options{}))
	defer srv.Close()
	sends := []map[string]string{
		{HeaderLedger: "a"},
		{HeaderLedger: "a", HeaderFailAfter: "500"},           // executed: counts
		{HeaderLedger: "a", HeaderStatus: "503"},              // not executed: does not
		{HeaderLedger: "b", HeaderDrop: "1"},                  // executed, no answer: counts
		{HeaderLedger: "c", HeaderDelay: "1", HeaderPad: "1"}, // counts
		nil, // no label: counted in /__executions only
	}
	for _, h := range sends {
		_, _, _ = post(t, srv.URL, `{"amount":1}`, h) // the drop has no answer
	}
	resp, err := http.Get(srv.URL + "/__ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a": 2, "b": 1, "c": 1}
	if len(got) != len(want) {
		t.Errorf("ledger %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ledger[%q] = %d, want %d (ledger %v)", k, got[k], v, got)
		}
	}
	if n := executions(t, srv.URL); n != 5 {
		t.Errorf("executions %d, want 5", n)
	}
}

func TestLedgerOverflowIsCountedNotDropped(t *testing.T) {
	s := New(nil, Options{})
	for i := range MaxLabels {
		s.ledger[strconv.Itoa(i)] = 1 // filled directly: a million requests would be slow
	}
	s.record("one-more")
	s.record("0")
	l := s.Ledger()
	if l[OverflowLabel] != 1 || l["0"] != 2 || l["one-more"] != 0 {
		t.Errorf("overflow %d, label 0 %d, one-more %d: want 1, 2, 0", l[OverflowLabel], l["0"], l["one-more"])
	}
}
