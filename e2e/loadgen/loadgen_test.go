package loadgen

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 100, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %d) = %v, want %v", tt.in, tt.p, got, tt.want)
		}
	}
}

// TestRun: counted requests reach the server, each client builds its own
// requests, and a wrong status fails the scenario.
func TestRun(t *testing.T) {
	var hits atomic.Int64
	keys := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		keys <- r.Header.Get("idempotency-key")
		if r.Header.Get("x-fail") != "" {
			rw.WriteHeader(500)
			return
		}
		rw.WriteHeader(201)
	}))
	defer srv.Close()
	s := Scenarios(Target{Gateway: srv.URL, Upstream: srv.URL}, "run")[3] // miss POST: fresh keys
	r, err := Run(context.Background(), srv.Client(), s, 3, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 12 || hits.Load() != 12 {
		t.Fatalf("requests = %d, hits = %d, want 12", r.Requests, hits.Load())
	}
	seen := map[string]bool{}
	for range 12 {
		seen[<-keys] = true
	}
	if len(seen) != 12 {
		t.Errorf("%d distinct keys among 12 misses, want 12", len(seen))
	}
	failing := s
	failing.Request = func(c, n int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(nil))
		req.Header.Set("x-fail", "1")
		return req, err
	}
	if _, err := Run(context.Background(), srv.Client(), failing, 1, 0, 1); err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("Run with 500 answers: err = %v, want a status error", err)
	}
	<-keys
	var out bytes.Buffer
	Print(&out, []Result{{Scenario: Scenario{Name: "a"}, Requests: 100, Elapsed: time.Second}, {Scenario: Scenario{Name: "b", Baseline: "a"}, Requests: 50, Elapsed: time.Second}})
	if !strings.Contains(out.String(), "0.50×") {
		t.Errorf("Print:\n%s\nwant a 0.50× ratio", out.String())
	}
}
