package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/e2e/upstream"
)

// The storm: clients, each its own principal, run through the same key
// names (so that a record answered to the wrong principal would show),
// retrying every key until it is settled, across two gateways, while the
// control plane is killed -9 and restarted, Redis is restarted, the
// upstream drops answers after executing and clients time out. It asserts
// the promise: executions <= distinct keys, one payment id per key, and
// nobody sees another principal's payment.

// stormAttempts bounds the attempts per key; a key still unsettled then
// is counted, not retried forever.
const stormAttempts = 40

// pair is one record: a principal's key.
type pair struct {
	client int
	key    string
}

// stormLog is what the clients saw, guarded by mu.
type stormLog struct {
	mu         sync.Mutex
	ids        map[pair]map[string]bool // payment ids seen per record
	owner      map[string]pair          // the record each payment id was seen for
	violations []string
	counts     map[string]int // answers by class
	settled    map[string]int // keys by how they settled
}

func (l *stormLog) add(class string) {
	l.mu.Lock()
	l.counts[class]++
	l.mu.Unlock()
}

// saw records payment id for record p from answer a; it reports the
// promise's violations.
func (l *stormLog) saw(p pair, id string, a answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var body struct {
		Owner string `json:"owner"`
		Key   string `json:"key"`
	}
	_ = json.Unmarshal(a.body, &body)
	if body.Owner != "" && (body.Owner != fmt.Sprint(p.client) || body.Key != p.key) {
		l.violations = append(l.violations, fmt.Sprintf("client %d, key %s got the payment of client %s, key %s: %v", p.client, p.key, body.Owner, body.Key, a))
	}
	if o, ok := l.owner[id]; ok && o != p {
		l.violations = append(l.violations, fmt.Sprintf("payment %s seen by client %d for key %s and by client %d for key %s", id, p.client, p.key, o.client, o.key))
	}
	l.owner[id] = p
	if l.ids[p] == nil {
		l.ids[p] = map[string]bool{}
	}
	l.ids[p][id] = true
}

func TestStorm(t *testing.T) {
	runStorm(t, hostStorm, false)
}

// runStorm is the storm on host's route. With reconcile (a route with
// on_indeterminate: reconcile) the indeterminate problem is not where a key
// settles: its client waits the answer's Retry-After and retries, and once
// the faults end every key of the run must be resolved within
// reconcileBound, none left indeterminate.
func runStorm(t *testing.T, host string, reconcile bool) {
	showLogsOnFailure(t)
	restartControlPlaneAfter(t)
	gwB := sharedGatewayB(t)
	gateways := []string{stk.gateway, gwB.url}
	clients, keys, dur := *stormClients, *stormKeys, *stormFor
	if clients < 1 || keys < 1 || dur <= 0 {
		t.Fatalf("-chaos.clients %d, -chaos.keys %d, -chaos.duration %v: each must be positive", clients, keys, dur)
	}
	if reconcile {
		// Half the size in each dimension: the second storm of make test
		// stays short; make chaos's flags scale it with the first.
		clients, keys, dur = max(clients/2, 1), max(keys/2, 1), dur/2
	}
	run := random(t, "")[:8]
	log := newStormLog()
	before := executions(t)

	ctx, stop := context.WithCancel(context.Background())
	faults := make(chan []string, 1)
	go func() { faults <- injectFaults(t, ctx) }()

	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			order := rng.Perm(keys)
			// Spread the keys over the storm so that faults hit them all
			// along.
			pace := dur / time.Duration(keys)
			for _, k := range order {
				p := pair{client: c, key: fmt.Sprintf("storm-%s-%d", run, k)}
				log.settle(stormKey(t, rng, host, gateways, p, log, reconcile))
				time.Sleep(pace)
			}
		}()
	}
	wg.Wait()
	stop()
	done := <-faults
	startControlPlane(t)
	keyPart := "storm-" + run + "-"
	if reconcile {
		left, took := waitReconciled(t, keyPart, reconcileBound)
		t.Logf("storm: keys indeterminate once the faults ended, %v later: %d", took.Round(time.Millisecond), len(left))
		if len(left) > 0 {
			t.Errorf("%d keys still indeterminate %v after the faults ended, want 0: %v", len(left), reconcileBound, left)
		}
	}

	// A last pass once every component is up again: each settled key's
	// retry must replay the one payment, or stay indeterminate (with
	// reconcile: replay it, or execute a key the lookup released).
	var lastIndeterminate int
	for c := range clients {
		for k := range keys {
			p := pair{client: c, key: fmt.Sprintf("storm-%s-%d", run, k)}
			a := send(t, stormPayment(gateways[k%2], host, p, nil, 0))
			if id := a.id(); id != "" {
				log.saw(p, id, a)
			}
			if reconcile && a.id() == "" {
				lastIndeterminate++
				t.Errorf("last pass, client %d key %s: %v, want a payment (replayed, or executed once the key was released)", p.client, p.key, a)
			}
		}
	}
	if reconcile {
		left := listKeys(t, api.StateIndeterminate, keyPart)
		t.Logf("storm: keys indeterminate after the last pass: %d; last-pass answers without a payment: %d", len(left), lastIndeterminate)
		if len(left) > 0 {
			t.Errorf("keys indeterminate after the last pass: %v", left)
		}
	}

	executed := executions(t) - before
	distinct := clients * keys
	var twoIDs []string
	for p, ids := range log.ids {
		if len(ids) > 1 {
			var s []string
			for id := range ids {
				s = append(s, id)
			}
			sort.Strings(s)
			twoIDs = append(twoIDs, fmt.Sprintf("client %d key %s: %v", p.client, p.key, s))
		}
	}
	sort.Strings(twoIDs)
	t.Logf("storm: %d clients x %d keys = %d distinct keys over %v (%v with faults: %s)", clients, keys, distinct, time.Since(start).Round(time.Millisecond), dur, strings.Join(done, ", "))
	t.Logf("storm: executions %d; keys with a payment id %d; keys with two or more ids %d; cross-principal answers %d",
		executed, len(log.ids), len(twoIDs), len(log.violations))
	t.Logf("storm: keys settled %v; answers %v", log.settled, log.counts)
	twice := doubles(ledger(t, stk.upstream), "/"+keyPart)
	t.Logf("storm: keys the upstream's ledger shows executed more than once: %d", len(twice))
	for i, d := range twice {
		if i == 20 {
			t.Errorf("… and %d more keys executed twice", len(twice)-20)
			break
		}
		t.Errorf("executed more than once: %s", d)
	}
	if executed > int64(distinct) {
		t.Errorf("executions %d > distinct keys %d: at least %d double executions", executed, distinct, executed-int64(distinct))
	}
	for i, s := range twoIDs {
		if i == 20 {
			t.Errorf("… and %d more keys with two payment ids", len(twoIDs)-20)
			break
		}
		t.Errorf("two payment ids for one key: %s", s)
	}
	for i, v := range log.violations {
		if i == 20 {
			t.Errorf("… and %d more answers of another principal", len(log.violations)-20)
			break
		}
		t.Errorf("another principal's payment: %s", v)
	}
}

func (l *stormLog) settle(how string) {
	l.mu.Lock()
	l.settled[how]++
	l.mu.Unlock()
}

// stormPayment is record p's request on host's route: the body names its
// owner and key, which the upstream echoes back, and the upstream's ledger
// counts its executions under p.label().
func stormPayment(gw, host string, p pair, headers map[string]string, timeout time.Duration) payment {
	h := map[string]string{upstream.HeaderLedger: p.label()}
	for k, v := range headers {
		h[k] = v
	}
	return payment{
		gateway: gw, host: host, key: p.key, auth: fmt.Sprintf("Bearer storm-client-%d", p.client),
		body:    fmt.Sprintf(`{"owner":"%d","key":"%s","amount":%d}`, p.client, p.key, 1000+p.client),
		headers: h, timeout: timeout,
	}
}

// label names record p in the upstream's ledger.
func (p pair) label() string { return fmt.Sprintf("%d/%s", p.client, p.key) }

// stormKey sends p on host's route until it settles (a payment, the indeterminate
// problem, another final answer) or stormAttempts run out; it says how it
// settled.
func stormKey(t *testing.T, rng *rand.Rand, host string, gateways []string, p pair, log *stormLog, reconcile bool) string {
	for range stormAttempts {
		var headers map[string]string
		timeout := 10 * time.Second
		switch r := rng.IntN(100); {
		case r < 10: // the upstream executes and drops the answer
			headers = hdrDrop
		case r < 20: // the client gives up while the upstream runs
			headers, timeout = hdrDelay(400), 150*time.Millisecond
		case r < 25: // an error after commit
			headers = hdrFailAfter(500)
		case r < 30: // a transient error the app marks not executed
			headers = map[string]string{"X-Demo-Status": "503"}
		}
		a := send(t, stormPayment(gateways[rng.IntN(len(gateways))], host, p, headers, timeout))
		if id := a.id(); id != "" {
			log.saw(p, id, a)
		}
		switch {
		case a.err != nil:
			log.add("no answer")
		case a.indeterminate() && reconcile:
			// The control plane is asking the upstream: come back when
			// the answer says (bounded: a lookup is due within seconds).
			log.add("409 indeterminate, reconciling")
			ra, err := strconv.Atoi(a.header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 3 {
				ra = 1
			}
			time.Sleep(time.Duration(ra) * time.Second)
			continue
		case a.indeterminate():
			log.add("409 indeterminate")
			return "indeterminate"
		case a.status == http.StatusConflict:
			log.add("409 in progress")
		case a.status == http.StatusServiceUnavailable && a.problemType() != "":
			log.add("503 control plane unavailable")
		case a.id() != "" && a.replayed():
			log.add("replayed")
			return "replayed"
		case a.id() != "":
			log.add(fmt.Sprintf("%d executed", a.status))
			return "executed"
		case a.status >= 500:
			log.add(fmt.Sprintf("%d", a.status))
		default:
			log.add(fmt.Sprintf("%d other", a.status))
			return "other"
		}
		time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
	}
	return "unsettled"
}

// injectFaults kills -9 and restarts the control plane and restarts Redis,
// in turn, until ctx ends; it returns what it did.
func injectFaults(t *testing.T, ctx context.Context) []string {
	var done []string
	counts := map[string]int{}
	pause := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := 0; ; i++ {
		if !pause(1500 * time.Millisecond) {
			break
		}
		if i%2 == 0 {
			// controlPlaneDown is read by the test after this goroutine
			// has returned.
			if err := stk.st.KillControlPlane(fctx); err != nil {
				t.Errorf("kill -9 the control plane: %v", err)
				break
			}
			controlPlaneDown = true
			pause(700 * time.Millisecond)
			if err := stk.st.StartControlPlane(fctx); err != nil {
				t.Errorf("starting the control plane: %v", err)
				break
			}
			controlPlaneDown = false
			counts["control plane kill -9 + start"]++
		} else {
			if err := stk.st.RestartRedis(fctx); err != nil {
				t.Errorf("restarting redis: %v", err)
				break
			}
			counts["redis restart"]++
		}
	}
	for k, n := range counts {
		done = append(done, fmt.Sprintf("%s x%d", k, n))
	}
	sort.Strings(done)
	return done
}

// ledger reads the upstream's executions per label (GET /__ledger).
func ledger(t testing.TB, upstreamURL string) map[string]int64 {
	t.Helper()
	resp, err := client.Get(upstreamURL + "/__ledger")
	if err != nil {
		t.Fatalf("GET /__ledger: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /__ledger: %s: bad answer (%v)", resp.Status, err)
	}
	if n := m[upstream.OverflowLabel]; n > 0 {
		t.Fatalf("the upstream's ledger overflowed (%d executions without a label of their own)", n)
	}
	return m
}

// doubles lists, sorted, the ledger's labels containing part that executed
// more than once, each with its count.
func doubles(l map[string]int64, part string) []string {
	var out []string
	for label, n := range l {
		if n > 1 && strings.Contains(label, part) {
			out = append(out, fmt.Sprintf("%s x%d", label, n))
		}
	}
	sort.Strings(out)
	return out
}
