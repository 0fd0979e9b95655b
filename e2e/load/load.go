// Package load runs the burst of issue 12 through the local stack: many
// concurrent slow requests on distinct keys (originals) and many
// duplicates waiting on a few keys (on_in_progress: wait), through a fleet
// of gateways, and reports what the burst cost: each VM's linear memory,
// the control plane's reserve calls, the originals' latency and what was
// shed. `make load` (e2e/cmd/load) prints it at full size; the package's
// test runs it small and asserts the bounds.
package load

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/idemgate/idemgate/plugin/policy"
)

// WaitHost selects the wait route of testdata/load.json; every other Host
// gets the conflict route.
const WaitHost = "wait.load.test"

// Params size the burst.
type Params struct {
	Gateways []string // base URLs; requests are spread over them in turn
	Admins   []string // each gateway's admin base URL (same order)
	Control  string   // the control plane's base URL (/metrics)
	Upstream string   // the demo upstream's base URL (/__executions)

	Originals     int           // concurrent slow requests, one key each
	WaitKeys      int           // keys the waiters wait on
	Waiters       int           // duplicates, spread evenly over WaitKeys
	Delay         time.Duration // the upstream's delay for every original (X-Demo-Delay-Ms)
	WaitDelay     time.Duration // the same for the wait keys' originals; 0 means Delay
	BodyPad       int           // bytes of padding in each original's body
	HeaderPad     int           // bytes of an extra request header (not fingerprinted) of each original
	WaitBodyPad   int           // the same for the wait keys (their originals and waiters)
	WaitHeaderPad int
	SettleWaiters time.Duration // between the wait keys' originals and the rest: they must hold their keys first
	Run           string        // a prefix for keys and principals, unique per run
}

// Kinds of requests in a burst.
const (
	KindOriginal     = "original"      // a slow request on its own key
	KindWaitOriginal = "wait-original" // the slow request the waiters of its key wait for
	KindWaiter       = "waiter"        // a duplicate on a wait key
)

// Answer is one request's outcome.
type Answer struct {
	Kind, Key string
	Status    int
	Replayed  bool // Idempotent-Replayed: true
	Took      time.Duration
	Err       error // transport
}

// VM is one VM's linear memory at three moments.
type VM struct {
	Gateway, Worker   int
	Before, Peak, End uint64
}

// Report is what a burst cost.
type Report struct {
	Elapsed          time.Duration
	VMs              []VM
	Answers          []Answer
	Statuses         map[string]map[int]int // kind → status → count
	Replayed         int                    // waiters answered Idempotent-Replayed: true
	Executions       int64                  // upstream executions during the burst
	OriginalP50      time.Duration
	OriginalP99      time.Duration
	Reserves         float64 // reserve operations the control plane counted during the burst
	ControlShed      float64 // idemgate_shed_total at the control plane (0 when absent)
	ControlShedKnown bool    // the metric exists
	GatewayShed      uint64  // idemgate.shed_memory summed over the gateways (0 when absent)
	GatewayShedKnown bool
	Polls            uint64 // idemgate.polls summed over the gateways (0 when absent)
	PollsKnown       bool
	// WaitWindow is, per wait key, how long its original took (the time
	// its waiters could wait at most).
	WaitWindow map[string]time.Duration
}

// ReservesPerSecond is the control plane's reserve rate over the burst.
func (r Report) ReservesPerSecond() float64 { return r.Reserves / r.Elapsed.Seconds() }

// MemoryBound is the bound on a VM's linear memory that
// plugin/policy/README.md ("The bound") gives as a formula of the
// policy's limits: twice (GOGC 100) the sum of the held bytes
// (max_held_bytes), the outcome queue (4 MiB) and a callback's transient
// buffers (2·max_body_bytes + 3·max_stored_response_bytes, the largest of
// the routes), plus 8 MiB for the Go runtime itself.
func MemoryBound(c *policy.Config) uint64 {
	var body, stored int
	for _, r := range c.Routes {
		body, stored = max(body, r.MaxBodyBytes), max(stored, r.MaxStoredResponseBytes)
	}
	return 2*uint64(c.MaxHeldBytes+4<<20+2*body+3*stored) + 8<<20
}

// WaitKey is the i-th wait key of a run.
func WaitKey(run string, i int) string { return fmt.Sprintf("%s-wait-%d", run, i) }

// Run sends the burst and measures it. Answers are not judged here
// (the caller does, from Statuses); only transport errors fail the run.
func Run(ctx context.Context, p Params) (Report, error) {
	client := &http.Client{
		Timeout:   2*p.Delay + 60*time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: p.Originals + p.Waiters + p.WaitKeys, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	var rep Report
	before, err := Memory(ctx, p.Admins)
	if err != nil {
		return rep, err
	}
	reserves0, _, err := ControlMetric(ctx, p.Control, "idemgate_operations_total", `op="reserve"`)
	if err != nil {
		return rep, err
	}
	exec0, err := executions(ctx, p.Upstream)
	if err != nil {
		return rep, err
	}

	// Peak memory: sampled while the burst runs (Wasm memory only grows,
	// so the last sample is also the peak; the sampling says so too).
	peak := map[[2]int]uint64{}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := Memory(ctx, p.Admins); err == nil {
				for _, v := range m {
					k := [2]int{v.Gateway, v.Worker}
					peak[k] = max(peak[k], v.End)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	var (
		mu      sync.Mutex
		answers []Answer
		wg      sync.WaitGroup
	)
	// Each kind is spread over the gateways in turn on its own, so that
	// every gateway gets its share of each.
	turn := map[string]int{}
	send := func(kind, host, key string, delay time.Duration, bodyPad, headerPad int) {
		g := p.Gateways[turn[kind]%len(p.Gateways)]
		turn[kind]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := Answer{Kind: kind, Key: key}
			req, err := newRequest(ctx, g, host, key, p.Run, delay, bodyPad, headerPad)
			if err == nil {
				t0 := time.Now()
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					a.Status, a.Replayed = resp.StatusCode, resp.Header.Get("Idempotent-Replayed") == "true"
				}
				a.Took = time.Since(t0)
			}
			a.Err = err
			mu.Lock()
			answers = append(answers, a)
			mu.Unlock()
		}()
	}

	start := time.Now()
	// The wait keys' originals first, so that the waiters find them in
	// progress; then the originals and the waiters all at once.
	for i := range p.WaitKeys {
		send(KindWaitOriginal, WaitHost, WaitKey(p.Run, i), cmp.Or(p.WaitDelay, p.Delay), p.WaitBodyPad, p.WaitHeaderPad)
	}
	select {
	case <-ctx.Done():
	case <-time.After(p.SettleWaiters):
	}
	for i := 0; i < max(p.Originals, p.Waiters); i++ {
		if i < p.Originals {
			send(KindOriginal, "", fmt.Sprintf("%s-orig-%d", p.Run, i), p.Delay, p.BodyPad, p.HeaderPad)
		}
		if i < p.Waiters && p.WaitKeys > 0 {
			send(KindWaiter, WaitHost, WaitKey(p.Run, i%p.WaitKeys), 0, p.WaitBodyPad, p.WaitHeaderPad)
		}
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	close(stopSampling)
	<-sampled

	end, err := Memory(ctx, p.Admins)
	if err != nil {
		return rep, err
	}
	for i, v := range end {
		k := [2]int{v.Gateway, v.Worker}
		v.Before, v.Peak = before[i].End, max(peak[k], v.End)
		rep.VMs = append(rep.VMs, v)
	}

	rep.Statuses = map[string]map[int]int{}
	rep.WaitWindow = map[string]time.Duration{}
	var lat []time.Duration
	rep.Answers = answers
	for _, a := range answers {
		if a.Err != nil {
			return rep, fmt.Errorf("%s %s: %w", a.Kind, a.Key, a.Err)
		}
		if rep.Statuses[a.Kind] == nil {
			rep.Statuses[a.Kind] = map[int]int{}
		}
		rep.Statuses[a.Kind][a.Status]++
		switch a.Kind {
		case KindOriginal:
			lat = append(lat, a.Took)
		case KindWaitOriginal:
			rep.WaitWindow[a.Key] = a.Took
		case KindWaiter:
			if a.Replayed {
				rep.Replayed++
			}
		}
	}
	slices.Sort(lat)
	rep.OriginalP50, rep.OriginalP99 = percentile(lat, 50), percentile(lat, 99)

	exec1, err := executions(ctx, p.Upstream)
	if err != nil {
		return rep, err
	}
	rep.Executions = exec1 - exec0
	reserves1, _, err := ControlMetric(ctx, p.Control, "idemgate_operations_total", `op="reserve"`)
	if err != nil {
		return rep, err
	}
	rep.Reserves = reserves1 - reserves0
	if rep.ControlShed, rep.ControlShedKnown, err = ControlMetric(ctx, p.Control, "idemgate_shed_total", ""); err != nil {
		return rep, err
	}
	if rep.GatewayShed, rep.GatewayShedKnown, err = GatewayStat(ctx, p.Admins, "wasmcustom.idemgate.shed_memory"); err != nil {
		return rep, err
	}
	if rep.Polls, rep.PollsKnown, err = GatewayStat(ctx, p.Admins, "wasmcustom.idemgate.polls"); err != nil {
		return rep, err
	}
	return rep, nil
}

// newRequest is a POST /payments; an original asks the upstream to take
// delay (a waiter: 0). A waiter sends the same body as its key's original,
// so that it replays rather than mismatches: the delay header is not
// fingerprinted.
func newRequest(ctx context.Context, gateway, host, key, run string, delay time.Duration, bodyPad, headerPad int) (*http.Request, error) {
	body := fmt.Sprintf(`{"amount":1000,"currency":"EUR","key":%q,"pad":%q}`, key, strings.Repeat("p", bodyPad))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/payments", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer "+run)
	req.Header.Set("idempotency-key", key)
	if headerPad > 0 {
		req.Header.Set("x-load-pad", strings.Repeat("h", headerPad))
	}
	if delay > 0 {
		req.Header.Set("x-demo-delay-ms", strconv.FormatInt(delay.Milliseconds(), 10))
	}
	return req, nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return b, err
}

func executions(ctx context.Context, upstream string) (int64, error) {
	b, err := get(ctx, upstream+"/__executions")
	if err != nil {
		return 0, err
	}
	var v struct{ Count int64 }
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("/__executions: %w", err)
	}
	return v.Count, nil
}

// Memory reads every VM's linear memory from the gateways' admin /memory
// (e2e/host), as VMs with End set, in gateway then worker order.
func Memory(ctx context.Context, admins []string) ([]VM, error) {
	var out []VM
	for g, a := range admins {
		b, err := get(ctx, a+"/memory")
		if err != nil {
			return nil, err
		}
		var vms []struct {
			Worker int    `json:"worker"`
			Bytes  uint64 `json:"bytes"`
		}
		if err := json.Unmarshal(b, &vms); err != nil {
			return nil, fmt.Errorf("%s/memory: %w", a, err)
		}
		for _, v := range vms {
			out = append(out, VM{Gateway: g, Worker: v.Worker, End: v.Bytes})
		}
	}
	return out, nil
}

// GatewayStat sums the /stats counter name over the gateways; known says
// whether any gateway defines it.
func GatewayStat(ctx context.Context, admins []string, name string) (sum uint64, known bool, err error) {
	for _, a := range admins {
		b, err := get(ctx, a+"/stats")
		if err != nil {
			return 0, false, err
		}
		if v, ok := ParseStat(b, name); ok {
			sum, known = sum+v, true
		}
	}
	return sum, known, nil
}

// ParseStat finds "name: value" in an Envoy-style /stats text.
func ParseStat(stats []byte, name string) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(stats))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok && k == name {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// ControlMetric sums the samples of a Prometheus metric at the control
// plane's /metrics whose labels contain match ("" for all); known says
// whether any sample exists.
func ControlMetric(ctx context.Context, control, name, match string) (float64, bool, error) {
	b, err := get(ctx, control+"/metrics")
	if err != nil {
		return 0, false, err
	}
	sum, known := ParseMetric(b, name, match)
	return sum, known, nil
}

// ParseMetric sums the samples of name in a Prometheus text exposition
// whose label set contains match.
func ParseMetric(text []byte, name, match string) (sum float64, known bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, labels, _ := strings.Cut(series, "{")
		if metric != name || !strings.Contains(labels, match) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			sum, known = sum+v, true
		}
	}
	return sum, known
}
