package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
	"github.com/idemgate/idemgate/internal/redistest"
)

// BenchmarkControlPlane measures reserve→complete cycles through the HTTP
// API on loopback at 1, 16, 64 and 256 concurrent clients, each without
// admission control (off) and with the default bound, taking turns on the
// same redis-server (compareBounds); and, against that
// redis-server, redis-benchmark's SET and EVALSHA rates at 64 clients: one
// Redis round trip per operation is the physical limit, and a cycle makes
// two. IDEM_BENCH_MAX_INFLIGHT=16,32 adds those bounds to the comparison.
// `make bench` runs it; BENCHMARKS.md keeps its results.
func BenchmarkControlPlane(b *testing.B) {
	rs := redistest.Start(b)
	client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{PoolSize: 256})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	bounds := []int{-1, server.DefaultMaxInFlight}
	if v := os.Getenv("IDEM_BENCH_MAX_INFLIGHT"); v != "" {
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				b.Fatalf("IDEM_BENCH_MAX_INFLIGHT=%q: want bounds of 2 or more, comma-separated", v)
			}
			if !slices.Contains(bounds, n) {
				bounds = append(bounds, n)
			}
		}
	}
	bases := map[int]string{}
	for _, n := range bounds {
		srv, err := server.New(store.New(client, store.Options{}), server.Options{
			Token:       "bench-token",
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			MaxInFlight: n,
		})
		if err != nil {
			b.Fatal(err)
		}
		ts := httptest.NewServer(srv)
		b.Cleanup(ts.Close)
		bases[n] = ts.URL
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

	b.Run("redis-benchmark/SET/clients=64", func(b *testing.B) {
		redisBenchmark(b, rs.Port(), "SET", "bench:__rand_int__", "v")
	})
	b.Run("redis-benchmark/EVALSHA/clients=64", func(b *testing.B) {
		sha, err := client.ScriptLoad(context.Background(), "return redis.call('SET', KEYS[1], ARGV[1])").Result()
		if err != nil {
			b.Fatal(err)
		}
		redisBenchmark(b, rs.Port(), "EVALSHA", sha, "1", "bench:__rand_int__", "v")
	})
	var run atomic.Int64
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("reserve-complete/clients=%d", clients), func(b *testing.B) {
			compareBounds(b, httpc, bases, bounds, clients, run.Add(1))
		})
	}
}

// cycles runs b.N reserve→complete cycles of fresh keys over clients
// goroutines and reports cycles/s and the p50/p99 latency of a cycle.
func cycles(b *testing.B, httpc *http.Client, base string, clients int, run int64) {
	b.ResetTimer()
	r, err := runCycles(httpc, base, clients, b.N, fmt.Sprintf("k-%d", run))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(r.lat)
	b.ReportMetric(float64(b.N)/r.elapsed.Seconds(), "cycles/s")
	b.ReportMetric(float64(r.lat[b.N/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.lat[b.N*99/100].Microseconds()), "p99-µs")
}

// compareBounds runs b.N cycles against each server of bases (one per
// bound) in rounds of at most compareRound cycles, the servers taking
// turns within each round and the order reversed every other round, so
// that a machine shared with other jobs slows all of them alike. It
// reports per bound cycles/s, p50 and p99 of a cycle, sheds per cycle,
// and each bound's throughput over the unbounded one's.
func compareBounds(b *testing.B, httpc *http.Client, bases map[int]string, bounds []int, clients int, run int64) {
	const compareRound = 500
	res := make(map[int]*cycleResult, len(bounds))
	for _, n := range bounds {
		res[n] = &cycleResult{}
	}
	order := slices.Clone(bounds)
	b.ResetTimer()
	for round, left := 0, b.N; left > 0; round++ {
		k := min(left, compareRound)
		left -= k
		for _, n := range order {
			r, err := runCycles(httpc, bases[n], clients, k, fmt.Sprintf("k-%d-%d-%d", run, round, n))
			if err != nil {
				b.Fatal(err)
			}
			res[n].add(r)
		}
		slices.Reverse(order)
	}
	b.StopTimer()
	rate := func(n int) float64 { return float64(len(res[n].lat)) / res[n].elapsed.Seconds() }
	for _, n := range bounds {
		r := res[n]
		name := boundName(n)
		slices.Sort(r.lat)
		b.ReportMetric(rate(n), "cycles/s-"+name)
		b.ReportMetric(float64(r.lat[len(r.lat)/2].Microseconds()), "p50-µs-"+name)
		b.ReportMetric(float64(r.lat[len(r.lat)*99/100].Microseconds()), "p99-µs-"+name)
		if n > 0 {
			b.ReportMetric(rate(n)/rate(-1), "rate-ratio-"+name)
			b.ReportMetric(float64(r.shedReserves)/float64(len(r.lat)), "shed-reserves/cycle-"+name)
			b.ReportMetric(float64(r.shedCompletes)/float64(len(r.lat)), "shed-completes/cycle-"+name)
		}
	}
}

func boundName(n int) string {
	if n <= 0 {
		return "off"
	}
	return strconv.Itoa(n)
}

// cycleResult is what runCycles measured: each completed cycle's latency,
// the time to complete them, the requests shed.
type cycleResult struct {
	lat                         []time.Duration
	elapsed                     time.Duration
	shedReserves, shedCompletes int64
}

func (c *cycleResult) add(r cycleResult) {
	c.lat = append(c.lat, r.lat...)
	c.elapsed += r.elapsed
	c.shedReserves += r.shedReserves
	c.shedCompletes += r.shedCompletes
}

// runCycles runs n reserve→complete cycles of fresh keys over clients
// goroutines. A client whose reserve is shed (503 overloaded) waits its
// Retry-After, as a client of the gateway answered 503 would, then starts
// a new cycle; a shed complete is sent again after 100 ms, doubling, as
// the filter's outbox does, and its cycle's latency includes the wait. The
// run ends at the n-th completed cycle.
func runCycles(httpc *http.Client, base string, clients, n int, prefix string) (cycleResult, error) {
	lat := make([]time.Duration, n)
	var done, keys atomic.Int64
	var shed sheds
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	stop := make(chan struct{})
	var stopOnce sync.Once
	var end time.Time
	halt := func() { stopOnce.Do(func() { end = time.Now(); close(stop) }) }
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				err := cycle(httpc, base, fmt.Sprintf("%s-%d", prefix, keys.Add(1)), &shed)
				var he *httpError
				if errors.As(err, &he) && he.shed() && he.path == api.PathReserve {
					select {
					case <-stop:
						return
					case <-time.After(shedPause(he.retryAfter)):
					}
					continue
				}
				if err != nil {
					errs <- err
					halt()
					return
				}
				i := done.Add(1) - 1
				if i < int64(n) {
					lat[i] = time.Since(t0)
				}
				if i == int64(n)-1 {
					halt()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return cycleResult{}, err
	}
	return cycleResult{lat: lat, elapsed: end.Sub(start), shedReserves: shed.reserves.Load(), shedCompletes: shed.completes.Load()}, nil
}

// sheds counts the requests of a run answered 503 overloaded.
type sheds struct{ reserves, completes atomic.Int64 }

// cycle reserves key and completes it. A shed reserve is returned (an
// *httpError); a shed complete is sent again (the filter's outbox would).
func cycle(httpc *http.Client, base, key string, shed *sheds) error {
	var res api.ReserveResponse
	if err := post(httpc, base+api.PathReserve, api.ReserveRequest{Scope: "bench", Key: key, Fingerprint: "sha256:00"}, &res); err != nil {
		var he *httpError
		if errors.As(err, &he) && he.shed() {
			shed.reserves.Add(1)
		}
		return err
	}
	if res.Outcome != api.Acquired {
		return fmt.Errorf("reserve %s: outcome %s", key, res.Outcome)
	}
	req := api.CompleteRequest{Scope: "bench", Key: key, Token: res.Token,
		Response: api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"id":"pay_1","amount":1000}`)}}
	backoff := 100 * time.Millisecond
	for range 20 {
		err := post(httpc, base+api.PathComplete, req, nil)
		var he *httpError
		if !errors.As(err, &he) || !he.shed() {
			return err
		}
		shed.completes.Add(1)
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	return fmt.Errorf("complete %s: shed 20 times", key)
}

// httpError is an answer other than 200.
type httpError struct {
	path       string
	status     int
	body       []byte
	retryAfter time.Duration
}

func (e *httpError) Error() string { return fmt.Sprintf("%s: HTTP %d: %s", e.path, e.status, e.body) }

// shed tells a 503 of admission control.
func (e *httpError) shed() bool {
	return e.status == http.StatusServiceUnavailable && bytes.Contains(e.body, []byte("urn:idemgate:problem:overloaded"))
}

func post(httpc *http.Client, url string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer bench-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		he := &httpError{path: req.URL.Path, status: resp.StatusCode, body: data, retryAfter: time.Second}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			he.retryAfter = time.Duration(s) * time.Second
		}
		return he
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// redisBenchmark runs b.N requests of a command through redis-benchmark
// with 64 clients and reports its own rate and latency percentiles.
func redisBenchmark(b *testing.B, port int, command ...string) {
	n := max(b.N, 1000)
	args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-c", "64", "-n", strconv.Itoa(n), "-r", "1000000", "--csv"}, command...)
	b.ResetTimer()
	out, err := exec.Command("redis-benchmark", args...).Output()
	b.StopTimer()
	if err != nil {
		b.Fatalf("redis-benchmark %v: %v (install it with: apt-get install -y redis-tools)", args, err)
	}
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 2 {
		b.Fatalf("redis-benchmark output %q: %v", out, err)
	}
	for i, col := range rows[0] {
		v, err := strconv.ParseFloat(rows[len(rows)-1][i], 64)
		if err != nil {
			continue
		}
		switch col {
		case "rps":
			b.ReportMetric(v, "req/s")
		case "p50_latency_ms":
			b.ReportMetric(v*1000, "p50-µs")
		case "p99_latency_ms":
			b.ReportMetric(v*1000, "p99-µs")
		}
	}
}

// BenchmarkDurable measures what durable mode costs: reserve→complete
// cycles through the HTTP API against one master with one replica on
// loopback, with durable mode off and on (--durable-replicas 1: each
// change waits for the replica's acknowledgement), off then on for each
// client count in one run, so that both see the same machine.
func BenchmarkDurable(b *testing.B) {
	rs := redistest.Start(b)
	redistest.StartReplica(b, rs)
	var run atomic.Int64
	bases := map[string]string{}
	for _, mode := range []struct {
		name string
		d    store.Durability
	}{{"off", store.Durability{}}, {"on", store.Durability{Replicas: 1, Timeout: 250 * time.Millisecond}}} {
		client, err := store.NewClient("redis://"+rs.Addr(), store.ClientOptions{PoolSize: 256})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { client.Close() })
		srv, err := server.New(store.New(client, store.Options{Durable: mode.d}), server.Options{
			Token:  "bench-token",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			b.Fatal(err)
		}
		ts := httptest.NewServer(srv)
		b.Cleanup(ts.Close)
		bases[mode.name] = ts.URL
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	for _, clients := range []int{1, 16} {
		for _, mode := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("durable=%s/clients=%d", mode, clients), func(b *testing.B) {
				cycles(b, httpc, bases[mode], clients, run.Add(1))
			})
		}
	}
}

// shedPause is how long a client whose reserve was shed waits before its
// next cycle: the answer's Retry-After, or IDEM_BENCH_SHED_PAUSE.
func shedPause(retryAfter time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv("IDEM_BENCH_SHED_PAUSE")); err == nil {
		return d
	}
	return retryAfter
}
