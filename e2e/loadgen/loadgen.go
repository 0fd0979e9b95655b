// Package loadgen drives the scenarios of make bench-e2e against a
// gateway and its upstream: a fixed number of clients for a fixed time
// each, latencies kept for percentiles.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// Target addresses the system under test.
type Target struct {
	Gateway  string // base URL
	Upstream string // base URL of the demo upstream
}

// Scenario is one kind of request and whom it is sent to.
type Scenario struct {
	Name     string
	Baseline string // the name of the scenario its ratio is taken to; "" for none
	// Request builds the n-th request of client c; want is the status
	// every answer must have.
	Request func(c, n int) (*http.Request, error)
	Want    int
}

// Result of one scenario.
type Result struct {
	Scenario Scenario
	Requests int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// RPS is requests per second.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

const body = `{"amount":1000,"currency":"EUR","customer":"cus_123","description":"bench"}`

// Scenarios are, in order: direct-to-upstream and pass-through (a GET
// the policy does not govern), direct-to-upstream and miss (a POST
// /payments that executes; through the gateway with a fresh key: reserve,
// forward, complete), and edge replay (one key per client, completed
// before the clock starts).
func Scenarios(t Target, run string) []Scenario {
	post := func(base, key string) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, base+"/payments", bytes.NewReader([]byte(body)))
		if err != nil {
			return nil, err
		}
		req.Header.Set("content-type", "application/json")
		req.Header.Set("authorization", "Bearer bench")
		if key != "" {
			req.Header.Set("idempotency-key", key)
		}
		return req, nil
	}
	get := func(base string) func(int, int) (*http.Request, error) {
		return func(int, int) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, base+"/__executions", nil)
		}
	}
	return []Scenario{
		{Name: "direct GET", Request: get(t.Upstream), Want: 200},
		{Name: "pass-through GET", Baseline: "direct GET", Request: get(t.Gateway), Want: 200},
		{Name: "direct POST", Request: func(int, int) (*http.Request, error) { return post(t.Upstream, "") }, Want: 201},
		{Name: "miss POST", Baseline: "direct POST", Request: func(c, n int) (*http.Request, error) {
			return post(t.Gateway, fmt.Sprintf("%s-miss-%d-%d", run, c, n))
		}, Want: 201},
		{Name: "edge replay POST", Baseline: "direct POST", Request: func(c, _ int) (*http.Request, error) {
			return post(t.Gateway, fmt.Sprintf("%s-replay-%d", run, c))
		}, Want: 201},
	}
}

// RunAll runs every scenario with conns clients for dur each.
func RunAll(ctx context.Context, t Target, conns int, dur time.Duration) ([]Result, error) {
	var id [6]byte
	rand.Read(id[:])
	run := hex.EncodeToString(id[:])
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: 2 * conns, Proxy: nil},
	}
	var out []Result
	for _, s := range Scenarios(t, run) {
		// Warm up: connections, the VMs, and for the replay scenario the
		// one completed key per client.
		if _, err := Run(ctx, client, s, conns, 0, 2); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", s.Name, err)
		}
		r, err := Run(ctx, client, s, conns, dur, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Run runs scenario s with conns clients, each sending requests until dur
// has passed (or, with dur 0, each sending exactly count requests). Any
// answer other than s.Want is an error.
func Run(ctx context.Context, client *http.Client, s Scenario, conns int, dur time.Duration, count int) (Result, error) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		ferr error
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for n := 0; ; n++ {
				if dur > 0 && time.Now().After(deadline) || dur == 0 && n >= count || ctx.Err() != nil {
					break
				}
				req, err := s.Request(c, n)
				if err == nil {
					t0 := time.Now()
					var resp *http.Response
					if resp, err = client.Do(req.WithContext(ctx)); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != s.Want {
							err = fmt.Errorf("status %d, want %d", resp.StatusCode, s.Want)
						}
					}
					mine = append(mine, time.Since(t0))
				}
				if err != nil {
					mu.Lock()
					if ferr == nil {
						ferr = err
					}
					mu.Unlock()
					break
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ferr != nil {
		return Result{}, ferr
	}
	slices.Sort(lat)
	return Result{Scenario: s, Requests: len(lat), Elapsed: elapsed, P50: percentile(lat, 50), P99: percentile(lat, 99)}, nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

// Print writes the results as a table with each scenario's throughput as
// a share of its baseline's.
func Print(w io.Writer, results []Result) {
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Scenario.Name] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests/s\tp50\tp99\tvs direct\t")
	for _, r := range results {
		ratio := ""
		if b, ok := byName[r.Scenario.Baseline]; ok && b.RPS() > 0 {
			ratio = fmt.Sprintf("%.2f×", r.RPS()/b.RPS())
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%s\t\n", r.Scenario.Name, r.RPS(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), ratio)
	}
	tw.Flush()
}
