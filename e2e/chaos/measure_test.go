package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/e2e/stack"
)

// What the two measuring storms (failover_test.go, appendfsync_test.go)
// share: several "sides", each a control plane + gateway + demo upstream
// of its own on a Redis the test runs, loaded by the same kind of clients
// as TestStorm while one injector hits every side's Redis at the same
// moments; the upstream's ledger counts executions per key on each side.

var (
	measureClients = flag.Int("chaos.measure-clients", 4, "failover and appendfsync storms: clients per side")
)

// hostMeasure is the route the measuring storms load: lease 2 s,
// fail-closed, on_indeterminate lock, and no edge cache. Without an edge
// cache every retry asks Redis: a gateway's cache would replay a completed
// key whatever Redis lost, hiding a lost record that another gateway (or
// this one once its cache entry expires) would execute again.
const hostMeasure = hostLock

// side is one stack (control plane, gateway, demo upstream) on a Redis the
// test runs, and what its clients saw.
type side struct {
	name     string
	st       *stack.Stack
	gateway  string
	upstream string
	log      *stormLog

	mu   sync.Mutex
	keys []pair
}

func newStormLog() *stormLog {
	return &stormLog{ids: map[pair]map[string]bool{}, owner: map[string]pair{}, counts: map[string]int{}, settled: map[string]int{}}
}

func (s *side) addKey(p pair) {
	s.mu.Lock()
	s.keys = append(s.keys, p)
	s.mu.Unlock()
}

// startSides starts one stack per name, concurrently (a gateway compiles
// the module: seconds on a loaded machine), each with cfg(name)'s Redis and
// control-plane flags; the stacks stop when the test ends, and their logs
// (in stk.logDir/<name>/) are shown if it fails.
func startSides(t *testing.T, names []string, cfg func(name string) stack.Config) []*side {
	t.Helper()
	sides := make([]*side, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		c := cfg(name)
		c.BinDir, c.Wasm, c.Policy = stk.bin, filepath.Join(stk.bin, "idempotency.wasm"), stk.policy
		c.LogDir = filepath.Join(stk.logDir, name)
		c.Gateway = stack.GatewayHost
		c.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			st, err := startOnFreeAddrs(ctx, &c)
			if err != nil {
				errs[i] = fmt.Errorf("side %s (logs in %s): %w", name, c.LogDir, err)
				return
			}
			sides[i] = &side{name: name, st: st, gateway: "http://" + c.GatewayAddr, upstream: "http://" + c.UpstreamAddr, log: newStormLog()}
		}()
	}
	wg.Wait()
	for _, s := range sides {
		if s != nil {
			t.Cleanup(s.st.Stop)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return sides
}

// startOnFreeAddrs starts a stack on free loopback addresses, trying new
// ones (boundedly) when one is taken before the stack binds it: a port
// found free is free only until someone else's connection draws it, and
// the storms open thousands of connections.
func startOnFreeAddrs(ctx context.Context, c *stack.Config) (*stack.Stack, error) {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		for _, a := range []*string{&c.GatewayAddr, &c.ControlPlaneAddr, &c.UpstreamAddr} {
			if *a, err = stack.FreeAddr(); err != nil {
				return nil, err
			}
		}
		var st *stack.Stack
		if st, err = stack.Start(ctx, *c); err == nil {
			return st, nil
		}
		var inUse *stack.AddrInUseError
		if !errors.As(err, &inUse) && !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, err
}

// runLoad runs clients clients per side until the returned stop is
// called (it waits for them; calling it again does nothing; the test's
// cleanup calls it too, so that a t.Fatal in an injector leaves no client
// running). Each client takes fresh keys, one after another (the same key
// names for every client, as in TestStorm, so that an answer for another
// principal would show), and retries each until it settles as TestStorm
// does, upstream faults included.
func runLoad(t *testing.T, sides []*side, clients int, run string) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	for si, s := range sides {
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(si*1000+c), uint64(time.Now().UnixNano())))
				for k := 0; ; k++ {
					select {
					case <-done:
						return
					default:
					}
					p := pair{client: c, key: fmt.Sprintf("m-%s-%d", run, k)}
					s.addKey(p)
					s.log.settle(stormKey(t, rng, hostMeasure, []string{s.gateway}, p, s.log, false))
					select {
					case <-done:
						return
					case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
					}
				}
			}()
		}
	}
	return stop
}

// finalPass sends every key of every side once more with everything up (a
// 503 or no answer is retried, boundedly): a key whose record Redis lost
// executes again here, which is what the ledger then shows.
func finalPass(t *testing.T, sides []*side) {
	var wg sync.WaitGroup
	for _, s := range sides {
		waitGoverned(t, s.gateway)
		s.mu.Lock()
		keys := append([]pair(nil), s.keys...)
		s.mu.Unlock()
		work := make(chan pair)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range work {
					for attempt := 0; ; attempt++ {
						a := send(t, stormPayment(s.gateway, hostMeasure, p, nil, 0))
						if id := a.id(); id != "" {
							s.log.saw(p, id, a)
						}
						if a.err == nil && a.status != http.StatusServiceUnavailable {
							break
						}
						if attempt == 30 {
							s.log.add("final pass: no answer but 503")
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
		for _, p := range keys {
			work <- p
		}
		close(work)
	}
	wg.Wait()
}

// settleCanary sends p through s until it is executed or replayed (201),
// boundedly, and returns that answer; it fails the test otherwise.
func settleCanary(t *testing.T, s *side, p pair) answer {
	t.Helper()
	var last answer
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		last = send(t, stormPayment(s.gateway, hostMeasure, p, nil, 10*time.Second))
		if last.err == nil && last.status == http.StatusCreated && last.id() != "" {
			s.log.saw(p, last.id(), last)
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("side %s: canary %s never executed or replayed within 60s; last answer: %v", s.name, p.key, last)
	return last
}

// tally is one side's numbers.
type tally struct {
	keys, requests, unavailable int
	doubles                     []string // ledger labels executed more than once, with counts
	twoIDs, cross               int
}

// tally counts what side s saw and executed; labels containing skip (the
// canaries, asserted on their own) are left out.
func (s *side) tally(t *testing.T, run, skip string) tally {
	t.Helper()
	var r tally
	s.mu.Lock()
	r.keys = len(s.keys)
	s.mu.Unlock()
	for _, d := range doubles(ledger(t, s.upstream), run) {
		if !strings.Contains(d, skip) {
			r.doubles = append(r.doubles, d)
		}
	}
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	for class, n := range s.log.counts {
		r.requests += n
		if class == "503 control plane unavailable" {
			r.unavailable += n
		}
	}
	for p, ids := range s.log.ids {
		if len(ids) > 1 && !strings.Contains(p.key, skip) {
			r.twoIDs++
		}
	}
	r.cross = len(s.log.violations)
	return r
}

func (r tally) String() string {
	return fmt.Sprintf("%d requests, %d keys, %d double executions, %d 503s", r.requests, r.keys, len(r.doubles), r.unavailable)
}

// assertNoDoubles fails the test for every double execution, key with two
// payment ids and cross-principal answer on side s.
func assertNoDoubles(t *testing.T, s *side, r tally) {
	t.Helper()
	for i, d := range r.doubles {
		if i == 20 {
			t.Errorf("side %s: … and %d more keys executed twice", s.name, len(r.doubles)-20)
			break
		}
		t.Errorf("side %s: executed more than once: %s", s.name, d)
	}
	if r.twoIDs > 0 {
		t.Errorf("side %s: %d keys answered with two payment ids", s.name, r.twoIDs)
	}
	assertNoCross(t, s)
}

// assertNoCross fails the test for every answer of another principal on
// side s: no fault of Redis may make one principal's record another's.
func assertNoCross(t *testing.T, s *side) {
	t.Helper()
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	for i, v := range s.log.violations {
		if i == 20 {
			t.Errorf("side %s: … and %d more answers of another principal", s.name, len(s.log.violations)-20)
			break
		}
		t.Errorf("side %s: another principal's payment: %s", s.name, v)
	}
}

// assertStacksHealthy fails the test if a component of a side exited
// without being asked to: a control plane must ride out Redis's faults.
func assertStacksHealthy(t *testing.T, sides []*side) {
	t.Helper()
	for _, s := range sides {
		select {
		case err := <-s.st.Failed():
			t.Errorf("side %s: %v", s.name, err)
		default:
		}
	}
}

// showSideLogsOnFailure prints the end of each side's component logs when
// t fails.
func showSideLogsOnFailure(t *testing.T, names []string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var out string
		for _, n := range names {
			files, _ := filepath.Glob(filepath.Join(stk.logDir, n, "*.log"))
			sort.Strings(files)
			for _, f := range files {
				out += fmt.Sprintf("----- end of %s\n%s\n", f, tail(f, 3072))
			}
		}
		t.Log("side logs:\n" + out)
	})
}

// sleepRand sleeps a random duration in [lo, hi).
func sleepRand(rng *rand.Rand, lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo))))
}
