package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// The store behind the documented Sentinel URL, on real processes, under
// continuous load across SENTINEL FAILOVER and across kill -9 of the master.
//
// What must hold (issue 11, item 1):
//   - every error is ErrUnavailable (the API's 503 + Retry-After);
//   - the store serves again once the sentinels have switched, and once
//     the deployment is whole again it serves with no error at all;
//   - no wrong answer: no mismatch, no replay other than a response the
//     key was completed with, and for a key whose completion was
//     acknowledged and then confirmed on both replicas (WAIT 2 on a side
//     connection after it) before the fault, never anything but that
//     exact replay.
//
// What Redis does not promise, and the test therefore counts rather than
// forbids: a write acknowledged by a master the sentinels have already
// replaced may be lost. SENTINEL FAILOVER leaves the old master writable,
// with its other replicas attached, until the client hears +switch-master
// (about a second here): measured, 5 to 10 % of the completions
// acknowledged during the switch were gone afterwards (617 of 7639).
// Durable mode closes that window only when it waits for every replica:
// with 2 replicas, WAIT 1 still lost 511 of 6336, WAIT 2 lost none (and
// answered 503 for about 10 s, until the sentinels demoted the old master
// and the new one had 2 replicas again); with 3 replicas WAIT 2 lost 420
// of 5464. A kill -9 on loopback lost nothing in these runs: the replicas
// had the stream before the process died (e2e/chaos cuts the links to
// make that window real).
//
// go-redis listens for +switch-master on one sentinel. When that sentinel
// is down, a SENTINEL FAILOVER goes unheard: the client keeps its pooled
// connections to the old master, which stays writable until the sentinels
// demote it (about 10 s later) and close its clients; everything
// acknowledged meanwhile is lost (measured: 7140 of 7780 completions), and
// not one error is seen. Only waiting for every replica (durable mode)
// turns that into 503s.
//
// sentinelCase runs the load against one deployment and store
// configuration; noLoss turns the counted losses into failures (for a
// durable configuration that must close the window).
type sentinelCase struct {
	name string
	opt  Options
	// "failover" (SENTINEL FAILOVER), "kill" (kill -9 of the master), or
	// "deaf-failover" (SENTINEL FAILOVER after killing the sentinel the
	// client listens to for +switch-master)
	faults []string
	noLoss bool
}

func TestSentinelFailoverUnderLoad(t *testing.T) {
	runSentinelCase(t, sentinelCase{name: "durable off", faults: []string{"failover", "kill", "deaf-failover"}})
}

func runSentinelCase(t *testing.T, tc sentinelCase) {
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	c, err := NewClient(s.URL(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l := newSentinelLoad(t, New(c, tc.opt), 4)
	l.start()
	l.waitOps(300)

	names := map[string]string{"failover": "SENTINEL FAILOVER", "kill": "kill -9 of the master",
		"deaf-failover": "SENTINEL FAILOVER, the client's sentinel down"}
	for _, f := range tc.faults {
		l.protect(s)
		ph := l.phase(names[f])
		l.faulting.Store(true)
		switch f {
		case "failover":
			s.Failover(t)
		case "kill":
			s.KillMaster(t)
		case "deaf-failover":
			sub := subscribedSentinel(t, s)
			t.Logf("the client listens to sentinel %s; killing it", sub.Addr())
			sub.Kill()
			s.Failover(t)
		default:
			t.Fatalf("unknown fault %q", f)
		}
		ph.switched = time.Now()
		// Serving again: every worker has succeeded since the sentinels
		// agreed on the new master.
		l.waitEachWorkerSucceeds(ph.switched)
		ph.recovered = time.Now()
		// Whole again (the demoted or relaunched node in sync): from then
		// on not a single error.
		s.WaitReplicasInSync(t, len(s.Nodes())-1)
		l.faulting.Store(false)
		l.endPhase(ph)
		clean := l.phase(ph.name + ", deployment whole again")
		l.waitOps(l.ops.Load() + 300)
		l.endPhase(clean)
		if n := clean.errs.Load(); n != 0 {
			t.Errorf("%s: %d errors once the deployment was whole again: %v", ph.name, n, clean.kindsString())
		}
		if f == "kill" && ph.errs.Load() == 0 {
			t.Errorf("kill -9 of the master under load caused no error: the load did not cross the fault")
		}
	}
	if got := s.ConfigEpoch(t); got != int64(len(tc.faults)) {
		t.Errorf("config epoch %d after %d failovers: the sentinels failed over on their own", got, len(tc.faults))
	}
	l.stop()
	l.verifyAll()
	l.report()
	if tc.noLoss {
		for _, p := range l.phases {
			if n, r := p.lostComplete.Load(), p.lostReserve.Load(); n != 0 || r != 0 {
				t.Errorf("%s, %s: %d acknowledged completions and %d reservations lost", tc.name, p.name, n, r)
			}
		}
	}
}

// sentinelLoad runs workers that reserve new keys, complete them, and
// reserve completed ones again to check the replay, each on keys of its
// own, and records every answer.
type sentinelLoad struct {
	t       *testing.T
	st      *Store
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	workers []*sentinelWorker

	ops       atomic.Int64
	ackSeq    atomic.Int64 // numbers acknowledged completions, in order
	protected atomic.Int64 // completions numbered up to this are on both replicas
	// faulting is set from just before a fault until the deployment is
	// whole again. A completion acknowledged meanwhile may have gone to a
	// master the sentinels had already replaced: it gets no number (it
	// is never protected) until a replay after the fault finds it.
	faulting atomic.Bool

	mu     sync.Mutex
	phases []*sentinelPhase
	cur    *sentinelPhase
	wrong  []string
}

type sentinelWorker struct {
	id          int
	keys        []*sentinelKey
	lastSuccess atomic.Int64 // unix nanos
	dropped     int          // keys left found in progress after a loss
}

type sentinelKey struct {
	key, fp   string
	attempted []string // bodies sent in a Complete, acknowledged or not
	acked     string   // body of the acknowledged completion
	// ackSeq numbers the completion once it is known to be on the
	// current master: acknowledged outside a fault, or replayed after
	// one. 0: not known.
	ackSeq  int64
	dropped bool
	// Phases in which the reservation and the completion were
	// acknowledged: a loss found later is counted against them.
	resPhase, ackPhase *sentinelPhase
}

// sentinelPhase collects errors and timing between a fault's start and its end.
type sentinelPhase struct {
	name                string
	start, end          time.Time
	switched, recovered time.Time
	ops, errs           atomic.Int64
	mu                  sync.Mutex
	firstErr, lastErr   time.Time
	kinds               map[string]int
	// Writes acknowledged in this phase, and how many of them were found
	// lost afterwards: the store no longer knew a reservation (complete:
	// stale token) or a completion (replay: acquired). A protected key
	// never counts here: for it that is a wrong answer.
	acked, lostComplete, lostReserve atomic.Int64
}

func newSentinelLoad(t *testing.T, st *Store, workers int) *sentinelLoad {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	l := &sentinelLoad{t: t, st: st, ctx: ctx, cancel: cancel}
	for i := 0; i < workers; i++ {
		l.workers = append(l.workers, &sentinelWorker{id: i})
	}
	l.phases = append(l.phases, &sentinelPhase{name: "warm-up", start: time.Now(), kinds: map[string]int{}})
	l.cur = l.phases[0]
	return l
}

func (l *sentinelLoad) start() {
	for _, w := range l.workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.run(w)
		}()
	}
}

func (l *sentinelLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *sentinelLoad) run(w *sentinelWorker) {
	rng := rand.New(rand.NewPCG(uint64(w.id), uint64(time.Now().UnixNano())))
	for l.ctx.Err() == nil {
		if len(w.keys) < 5 || rng.IntN(2) == 0 {
			k := &sentinelKey{key: fmt.Sprintf("w%d-%d", w.id, len(w.keys)), fp: fmt.Sprintf("fp-w%d-%d", w.id, len(w.keys))}
			w.keys = append(w.keys, k)
			l.execute(w, k)
		} else if k := w.keys[rng.IntN(len(w.keys))]; !k.dropped && k.acked != "" {
			l.replay(w, k)
		}
		time.Sleep(2 * time.Millisecond) // leave CPU to the sentinels
	}
}

func (l *sentinelLoad) phaseNow() *sentinelPhase {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// phase starts a new phase; its errors and ops are counted apart.
func (l *sentinelLoad) phase(name string) *sentinelPhase {
	p := &sentinelPhase{name: name, start: time.Now(), kinds: map[string]int{}}
	l.mu.Lock()
	l.phases = append(l.phases, p)
	l.cur = p
	l.mu.Unlock()
	return p
}

func (l *sentinelLoad) endPhase(p *sentinelPhase) { p.end = time.Now() }

func (l *sentinelLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.wrong) < 50 {
		l.wrong = append(l.wrong, fmt.Sprintf(format, args...))
	}
}

func (l *sentinelLoad) success(w *sentinelWorker) {
	l.ops.Add(1)
	l.phaseNow().ops.Add(1)
	w.lastSuccess.Store(time.Now().UnixNano())
}

// noteErr records an error; anything but ErrUnavailable is a wrong answer.
func (l *sentinelLoad) noteErr(op string, err error) {
	if l.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	if !errors.Is(err, ErrUnavailable) {
		l.fail("%s: error %v does not match ErrUnavailable", op, err)
	}
	p := l.phaseNow()
	p.errs.Add(1)
	p.mu.Lock()
	now := time.Now()
	if p.firstErr.IsZero() {
		p.firstErr = now
	}
	p.lastErr = now
	p.kinds[sentinelErrKind(err)]++
	p.mu.Unlock()
}

// sentinelErrKind names an error for the log.
func sentinelErrKind(err error) string {
	s := err.Error()
	for _, k := range []string{"READONLY", "connection refused", "connection reset", "EOF", "use of closed network connection",
		"i/o timeout", "context deadline exceeded", "LOADING", "MASTERDOWN", "all sentinels", "broken pipe"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}

// retry runs f until it answers without ErrUnavailable (each such error is
// recorded), the load stops, or a generous bound passes.
func (l *sentinelLoad) retry(op string, f func() error) (error, bool) {
	deadline := time.Now().Add(60 * time.Second)
	for l.ctx.Err() == nil && time.Now().Before(deadline) {
		err := f()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err, true
		}
		l.noteErr(op, err)
		time.Sleep(20 * time.Millisecond)
	}
	if l.ctx.Err() == nil {
		l.fail("%s: no answer within 60s", op)
	}
	return nil, false
}

// reserve asks for k under a fresh holder, retrying with that holder (a
// retry whose first run acquired answers acquired again).
func (l *sentinelLoad) reserve(w *sentinelWorker, k *sentinelKey) (api.ReserveResponse, bool) {
	holder := newNonce()
	var res api.ReserveResponse
	err, ok := l.retry("reserve "+k.key, func() error {
		var err error
		res, err = l.st.Reserve(l.ctx, api.ReserveRequest{Scope: "failover", Key: k.key, Fingerprint: k.fp, Holder: holder})
		return err
	})
	if !ok {
		return res, false
	}
	if err != nil {
		l.fail("reserve %s: %v", k.key, err)
		return res, false
	}
	l.success(w)
	return res, true
}

// execute reserves a new key and completes it; when the switch lost the
// reservation (stale token) it starts over, as a client would.
func (l *sentinelLoad) execute(w *sentinelWorker, k *sentinelKey) {
	for attempt := 0; attempt < 5; attempt++ {
		res, ok := l.reserve(w, k)
		if !ok {
			return
		}
		if res.Outcome != api.Acquired {
			if len(k.attempted) > 0 && res.Outcome == api.InProgress {
				// An earlier attempt's reservation survived, its
				// completion did not: it stays in progress.
				k.dropped = true
				w.dropped++
				return
			}
			l.fail("reserve of %s (attempts %d) answered %+v, want acquired", k.key, len(k.attempted), res)
			k.dropped = true
			return
		}
		k.resPhase = l.phaseNow()
		if l.complete(w, k, res.Token) {
			return
		}
	}
	l.fail("%s: reservation lost 5 times in a row", k.key)
	k.dropped = true
}

// complete stores a response for k; false when the store no longer knew
// the reservation (lost in a switch).
func (l *sentinelLoad) complete(w *sentinelWorker, k *sentinelKey, tok string) bool {
	body := fmt.Sprintf("%s#%d", k.key, len(k.attempted)+1)
	k.attempted = append(k.attempted, body)
	err, ok := l.retry("complete "+k.key, func() error {
		return l.st.Complete(l.ctx, api.CompleteRequest{Scope: "failover", Key: k.key, Token: tok,
			Response: api.StoredResponse{Status: 201, Headers: [][2]string{{"X-Key", k.key}}, Body: []byte(body)}})
	})
	switch {
	case !ok:
		k.dropped = true
		return true
	case errors.Is(err, ErrStaleToken):
		if k.resPhase != nil {
			k.resPhase.lostReserve.Add(1)
		}
		return false
	case err != nil:
		l.fail("complete %s: %v", k.key, err)
		k.dropped = true
		return true
	}
	l.success(w)
	k.acked, k.ackSeq, k.ackPhase = body, 0, l.phaseNow()
	k.ackPhase.acked.Add(1)
	if !l.faulting.Load() {
		k.ackSeq = l.ackSeq.Add(1)
	}
	return true
}

// replay reserves a completed key again and checks the answer.
func (l *sentinelLoad) replay(w *sentinelWorker, k *sentinelKey) {
	res, ok := l.reserve(w, k)
	if !ok {
		return
	}
	l.checkReplay(w, k, res)
}

func (l *sentinelLoad) isProtected(k *sentinelKey) bool {
	return k.ackSeq != 0 && k.ackSeq <= l.protected.Load()
}

func (l *sentinelLoad) checkReplay(w *sentinelWorker, k *sentinelKey, res api.ReserveResponse) {
	prot := l.isProtected(k)
	switch res.Outcome {
	case api.Completed:
		r := res.Response
		if r == nil || r.Status != 201 || len(r.Headers) != 1 || r.Headers[0] != [2]string{"X-Key", k.key} {
			l.fail("replay of %s: response %+v, not the one stored", k.key, r)
			return
		}
		got := string(r.Body)
		switch {
		case prot && got != k.acked:
			l.fail("replay of protected %s: body %q, want the acknowledged %q", k.key, got, k.acked)
		case !slices.Contains(k.attempted, got):
			l.fail("replay of %s: body %q was never sent (sent %q)", k.key, got, k.attempted)
		case k.ackSeq == 0 && !l.faulting.Load():
			// Acknowledged during a fault, found on the master after it.
			k.acked, k.ackSeq = got, l.ackSeq.Add(1)
		}
	case api.Acquired:
		if prot {
			l.fail("WRONG: reserve of %s acquired; its completion %q was acknowledged and on both replicas before the fault", k.key, k.acked)
			k.dropped = true
			return
		}
		// The completion was lost in a switch: the operation would run
		// again. Count it and complete it, as the client would.
		k.ackPhase.lostComplete.Add(1)
		k.acked = ""
		k.resPhase = l.phaseNow()
		if !l.complete(w, k, res.Token) {
			k.dropped = true
		}
	case api.InProgress:
		if prot {
			l.fail("WRONG: reserve of protected %s answered in_progress", k.key)
		}
		k.dropped = true
		w.dropped++
	default:
		l.fail("reserve of %s (protected %v) answered %+v", k.key, prot, res)
		k.dropped = true
	}
}

// protect confirms that every completion acknowledged so far is on both
// replicas: the test writes a marker after them and waits for both
// replicas to acknowledge it (the replication stream is ordered, so they
// then hold everything before it).
func (l *sentinelLoad) protect(s *redistest.Sentinel) {
	l.t.Helper()
	upTo := l.ackSeq.Load()
	s.Master(l.t).WaitReplicated(l.t, 2)
	l.protected.Store(upTo)
}

// waitOps waits until the load has done n successful operations.
func (l *sentinelLoad) waitOps(n int64) {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for l.ops.Load() < n {
		if time.Now().After(deadline) {
			l.stop()
			l.t.Fatalf("only %d of %d operations succeeded within 60s; wrong answers: %v", l.ops.Load(), n, l.wrong)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEachWorkerSucceeds waits until every worker has succeeded after t0.
func (l *sentinelLoad) waitEachWorkerSucceeds(t0 time.Time) {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, w := range l.workers {
		for w.lastSuccess.Load() <= t0.UnixNano() {
			if time.Now().After(deadline) {
				l.stop()
				l.t.Fatalf("worker %d did not succeed within 60s of the switch; wrong answers: %v", w.id, l.wrong)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// verifyAll reserves every acknowledged key once more, after the load,
// each worker's keys in a goroutine of their own.
func (l *sentinelLoad) verifyAll() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.ctx = ctx
	l.phase("final check")
	var keys, prot atomic.Int64
	var wg sync.WaitGroup
	for _, w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, k := range w.keys {
				if k.dropped || k.acked == "" {
					continue
				}
				keys.Add(1)
				if l.isProtected(k) {
					prot.Add(1)
				}
				res, err := l.st.Reserve(ctx, api.ReserveRequest{Scope: "failover", Key: k.key, Fingerprint: k.fp})
				if err != nil {
					l.fail("final reserve of %s: %v", k.key, err)
					return
				}
				l.success(w)
				l.checkReplay(w, k, res)
			}
		}()
	}
	wg.Wait()
	l.t.Logf("final check: %d completed keys replayed, %d of them protected (on both replicas before a fault)", keys.Load(), prot.Load())
	if prot.Load() == 0 {
		l.t.Error("no key was protected: the test checked nothing across the faults")
	}
	for _, msg := range l.wrong {
		l.t.Error(msg)
	}
}

func (p *sentinelPhase) kindsString() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ks := make([]string, 0, len(p.kinds))
	for k, n := range p.kinds {
		ks = append(ks, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(ks)
	return strings.Join(ks, "; ")
}

func (l *sentinelLoad) report() {
	l.t.Logf("load: %d successful operations", l.ops.Load())
	for _, p := range l.phases {
		line := fmt.Sprintf("%s: %d ok, %d errors", p.name, p.ops.Load(), p.errs.Load())
		if !p.switched.IsZero() {
			line += fmt.Sprintf("; sentinels agreed after %v, every worker served again after %v",
				p.switched.Sub(p.start).Round(time.Millisecond), p.recovered.Sub(p.start).Round(time.Millisecond))
		}
		if !p.firstErr.IsZero() {
			line += fmt.Sprintf("; errors from +%v to +%v (%s)", p.firstErr.Sub(p.start).Round(time.Millisecond),
				p.lastErr.Sub(p.start).Round(time.Millisecond), p.kindsString())
		}
		line += fmt.Sprintf("; %d completions acknowledged, %d of them lost (and %d reservations)",
			p.acked.Load(), p.lostComplete.Load(), p.lostReserve.Load())
		l.t.Log(line)
	}
	dropped := 0
	for _, w := range l.workers {
		dropped += w.dropped
	}
	l.t.Logf("keys left in progress after a lost completion: %d", dropped)
}

// A connection left on a node that became a replica (a demoted master
// before the client hears of the switch, or a client pointed at the wrong
// node) must never produce an answer the master would not give: a reserve
// that would write fails READONLY, which is ErrUnavailable (503); one
// that only reads replays what the replica holds.
func TestStoreOnReplica(t *testing.T) {
	ctx := testCtx(t)
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	mc, err := NewClient("redis://"+master.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Close() })
	rc, err := NewClient("redis://"+replica.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	onMaster, onReplica := New(mc, Options{}), New(rc, Options{})

	// Completed and in progress on the master, replicated.
	res, err := onMaster.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "done", Fingerprint: "fp"})
	if err != nil || res.Outcome != api.Acquired {
		t.Fatalf("reserve on master: %+v, %v", res, err)
	}
	if err := onMaster.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "done", Token: res.Token,
		Response: api.StoredResponse{Status: 201, Body: []byte("once")}}); err != nil {
		t.Fatal(err)
	}
	held, err := onMaster.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "held", Fingerprint: "fp"})
	if err != nil || held.Outcome != api.Acquired {
		t.Fatalf("reserve on master: %+v, %v", held, err)
	}
	master.WaitReplicated(t, 1)

	// Writes: READONLY, as ErrUnavailable.
	for name, call := range map[string]func() error{
		"reserve of a new key": func() error {
			_, err := onReplica.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "new", Fingerprint: "fp"})
			return err
		},
		"complete": func() error {
			return onReplica.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "held", Token: held.Token,
				Response: api.StoredResponse{Status: 200}})
		},
		"release": func() error {
			return onReplica.Release(ctx, api.ReleaseRequest{Scope: "s", Key: "held", Token: held.Token})
		},
	} {
		err := call()
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "READONLY") {
			t.Errorf("%s on a replica: %v, want ErrUnavailable from READONLY", name, err)
		}
	}
	// Reads: the replica's (replicated) state, never acquired.
	if res, err := onReplica.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "done", Fingerprint: "fp"}); err != nil ||
		res.Outcome != api.Completed || string(res.Response.Body) != "once" {
		t.Errorf("reserve of a completed key on a replica: %+v, %v; want its replay", res, err)
	}
	if res, err := onReplica.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "held", Fingerprint: "fp"}); err != nil ||
		res.Outcome != api.InProgress {
		t.Errorf("reserve of a held key on a replica: %+v, %v; want in_progress", res, err)
	}
	// Nothing the replica refused reached the master.
	if n, err := mc.Exists(ctx, onMaster.RecordKey("s", "new")).Result(); err != nil || n != 0 {
		t.Errorf("record of the refused reserve on the master: %d, %v", n, err)
	}
}

// subscribedSentinel finds the sentinel on which the client listens for
// +switch-master (a connection subscribed to two channels).
func subscribedSentinel(t *testing.T, s *redistest.Sentinel) *redistest.Server {
	t.Helper()
	ctx := testCtx(t)
	for _, sn := range s.Sentinels() {
		list, err := sn.Client().ClientList(ctx).Result()
		if err != nil {
			t.Fatalf("CLIENT LIST on sentinel %s: %v", sn.Addr(), err)
		}
		if strings.Contains(list, " sub=2 ") {
			return sn
		}
	}
	t.Fatal("no sentinel has the client's subscription")
	return nil
}

// TestSentinelFailoverUnderLoadDurable: durable mode waiting for every
// replica closes the window the test above measures: across SENTINEL
// FAILOVER, kill -9 and a switch the client does not hear, nothing
// acknowledged is lost; the writes the old master took meanwhile answer
// 503 (ErrNotDurable) instead.
func TestSentinelFailoverUnderLoadDurable(t *testing.T) {
	runSentinelCase(t, sentinelCase{name: "durable 2 of 2", opt: Options{Durable: Durability{Replicas: 2}},
		faults: []string{"failover", "kill", "deaf-failover"}, noLoss: true})
}
