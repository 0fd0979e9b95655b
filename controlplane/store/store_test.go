package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// testTimeout bounds every test's Redis calls, so a bug cannot hang a test.
const testTimeout = 20 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newStandalone starts a private redis-server and a Store on it through
// NewClient, as the service builds it.
func newStandalone(t *testing.T, opt Options) (*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	c, err := NewClient("redis://"+srv.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return New(c, opt), srv
}

// testServer is one private redis-server on which tests build several
// Stores (other options, one data set).
type testServer struct {
	t *testing.T
	c redis.UniversalClient
}

func newServer(t *testing.T) *testServer {
	t.Helper()
	srv := redistest.Start(t)
	c, err := NewClient("redis://"+srv.Addr(), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testServer{t: t, c: c}
}

func (ts *testServer) store(opt Options) *Store {
	if err := opt.Validate(); err != nil {
		ts.t.Fatal(err)
	}
	return New(ts.c, opt)
}

// step is one operation of a state-machine scenario. Tokens are named: a
// reserve that acquires saves its token under tok, complete, release and
// abandon present the token saved under tok. Holders are named too: "hA"
// stands for a valid holder id derived from it.
type step struct {
	// reserve, complete, release, abandon, releaseHolder, get, delete,
	// forceRelease, expireLease (wait until Redis's clock passes the
	// record's lease end), expireTTL (wait until the record is gone)
	do      string
	fp      string
	leaseMS int64
	ttlMS   int64
	oi      string // reserve: on_indeterminate
	holder  string // reserve, releaseHolder: a holder name
	tok     string
	status  int         // complete: response status (body is derived)
	want    api.Outcome // reserve
	// reserve: the reserve met its holder's fence (InProgress + ErrFenced)
	fenced bool
	// reserve: this reserve found the lease ended and made the record
	// indeterminate (Indeterminate + ErrLeaseEnded)
	leaseEnded bool
	// reserve acquired: the token must equal the one saved under sameTok
	sameTok string
	wantErr error     // complete, release, abandon, get, delete, forceRelease
	state   api.State // get: expected state
	wantSt  int       // reserve completed / get completed: expected status
	// releaseHolder: whether the record was deleted
	deleted bool
	// reserve in_progress / indeterminate: the remaining time must lie in
	// [minRemaining (default 1), maxRemaining (default the lease, or the
	// lease + TTL for indeterminate: a reservation that locks lives a
	// full TTL past its lease)]
	maxRemaining, minRemaining int64
}

type scenario struct {
	name  string
	steps []step
}

func responseFor(status int) api.StoredResponse {
	return api.StoredResponse{
		Status:  status,
		Headers: [][2]string{{"Content-Type", "application/json"}, {"X-Id", fmt.Sprint(status)}},
		Body:    []byte(fmt.Sprintf(`{"status":%d}`, status)),
	}
}

// holderID turns a holder name into a valid holder id.
func holderID(name string) string { return name + "_0123456789abcdef" }

// shortLease is the lease of the scenarios that wait for its end. The wait
// polls Redis's clock (expireLease), so the lease only has to be long
// enough that the steps before the wait run within it, even on a loaded
// machine under -race.
const shortLease = 1500

var scenarios = []scenario{
	// absent
	{name: "absent: acquired, then in progress", steps: []step{
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "get", state: api.StateInProgress},
		{do: "reserve", fp: "A", want: api.InProgress},
	}},
	{name: "absent: acquired with the caller's holder id in the token", steps: []step{
		{do: "reserve", fp: "A", holder: "hA", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 201},
	}},
	{name: "absent: complete, release and abandon are stale", steps: []step{
		{do: "complete", tok: "bogus", status: 200, wantErr: ErrStaleToken},
		{do: "release", tok: "bogus", wantErr: ErrStaleToken},
		{do: "abandon", tok: "bogus", wantErr: ErrStaleToken},
		{do: "get", wantErr: ErrNotFound},
	}},

	// in_progress, lease live
	{name: "in progress: other fingerprint is mismatch", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "reserve", fp: "B", want: api.Mismatch},
		{do: "complete", tok: "t1", status: 201},
	}},
	{name: "in progress: the same holder asking again gets the same token", steps: []step{
		{do: "reserve", fp: "A", holder: "hA", tok: "t1", want: api.Acquired},
		{do: "reserve", fp: "A", holder: "hA", sameTok: "t1", want: api.Acquired},
		{do: "reserve", fp: "A", holder: "hB", want: api.InProgress},
		{do: "reserve", fp: "A", want: api.InProgress},
	}},
	{name: "in progress: a wrong token changes nothing", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "release", tok: "bogus", wantErr: ErrStaleToken},
		{do: "complete", tok: "bogus", status: 200, wantErr: ErrStaleToken},
		{do: "abandon", tok: "bogus", wantErr: ErrStaleToken},
		{do: "get", state: api.StateInProgress},
		{do: "complete", tok: "t1", status: 204},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 204},
	}},
	{name: "in progress: release makes it absent, the old token is stale after", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "release", tok: "t1"},
		{do: "get", wantErr: ErrNotFound},
		{do: "release", tok: "t1", wantErr: ErrStaleToken},
		{do: "reserve", fp: "B", tok: "t2", want: api.Acquired},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "complete", tok: "t2", status: 202},
		{do: "reserve", fp: "B", want: api.Completed, wantSt: 202},
	}},

	// in_progress, lease over, lock (the default)
	{name: "lease over, lock: indeterminate, never handed over", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, ttlMS: 60_000, tok: "t1", want: api.Acquired},
		{do: "reserve", fp: "A", leaseMS: shortLease, want: api.InProgress},
		{do: "expireLease"},
		{do: "get", state: api.StateIndeterminate},
		{do: "reserve", fp: "B", want: api.Mismatch},
		{do: "reserve", leaseEnded: true, fp: "A", leaseMS: shortLease, ttlMS: 60_000, want: api.Indeterminate, minRemaining: 50_000, maxRemaining: 60_000},
		{do: "reserve", fp: "A", leaseMS: shortLease, ttlMS: 60_000, holder: "hB", want: api.Indeterminate, minRemaining: 50_000, maxRemaining: 60_000},
		{do: "reserve", fp: "B", want: api.Mismatch},
		{do: "get", state: api.StateIndeterminate},
	}},
	{name: "lease over, lock, explicit: indeterminate", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseLock, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, want: api.Indeterminate},
	}},
	{name: "lease over, lock: the holder's late complete lands and is replayed", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", want: api.Indeterminate},
		{do: "complete", tok: "bogus", status: 500, wantErr: ErrStaleToken},
		{do: "complete", tok: "t1", status: 201},
		{do: "get", state: api.StateCompleted, wantSt: 201},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 201},
		{do: "reserve", fp: "B", want: api.Mismatch},
	}},
	{name: "lease over, lock: complete before any reserve noticed", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "complete", tok: "t1", status: 200},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 200},
	}},
	{name: "lease over, lock: the holder's release frees it", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", want: api.Indeterminate},
		{do: "release", tok: "bogus", wantErr: ErrStaleToken},
		{do: "release", tok: "t1"},
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "A", tok: "t2", want: api.Acquired},
	}},
	{name: "lease over, lock: the holder abandons, then its token holds no more", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", want: api.Indeterminate},
		{do: "abandon", tok: "t1"},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "release", tok: "t1", wantErr: ErrStaleToken},
		{do: "reserve", fp: "A", want: api.Indeterminate, maxRemaining: (api.DefaultLease + api.DefaultTTL).Milliseconds()},
	}},

	// in_progress, lease over, release (route opted in)
	{name: "lease over, release: taken over with a new token, the old one stale", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, holder: "hA", tok: "t1", want: api.Acquired},
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, want: api.InProgress},
		{do: "expireLease"},
		{do: "get", state: api.StateInProgress},
		{do: "reserve", fp: "B", leaseMS: shortLease, oi: api.LeaseRelease, want: api.Mismatch},
		{do: "reserve", fp: "A", leaseMS: 60_000, oi: api.LeaseRelease, holder: "hB", tok: "t2", want: api.Acquired},
		{do: "reserve", fp: "A", leaseMS: 60_000, want: api.InProgress},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "release", tok: "t1", wantErr: ErrStaleToken},
		{do: "abandon", tok: "t1", wantErr: ErrStaleToken},
		{do: "releaseHolder", holder: "hA"},
		{do: "get", state: api.StateInProgress},
		{do: "complete", tok: "t2", status: 201},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 201},
	}},
	{name: "lease over, release: the taker chose lock, its own lease end locks", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", fp: "A", leaseMS: shortLease, tok: "t2", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, want: api.Indeterminate},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "complete", tok: "t2", status: 200},
	}},
	{name: "lease over, release: the untaken holder still completes", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "get", state: api.StateInProgress},
		{do: "complete", tok: "t1", status: 200},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 200},
	}},

	// indeterminate by abandon
	{name: "abandon: indeterminate until the TTL, never taken over", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, ttlMS: 60_000, oi: api.LeaseRelease, tok: "t1", want: api.Acquired},
		{do: "abandon", tok: "t1"},
		{do: "get", state: api.StateIndeterminate},
		{do: "reserve", fp: "A", leaseMS: shortLease, ttlMS: 60_000, want: api.Indeterminate, minRemaining: 50_000, maxRemaining: 60_000},
		{do: "reserve", fp: "B", want: api.Mismatch},
		{do: "reserve", fp: "A", leaseMS: shortLease, ttlMS: 60_000, oi: api.LeaseRelease, want: api.Indeterminate, minRemaining: 50_000, maxRemaining: 60_000},
		{do: "get", state: api.StateIndeterminate},
	}},
	{name: "abandon: idempotent; the token completes and releases nothing after", steps: []step{
		{do: "reserve", fp: "A", holder: "hA", tok: "t1", want: api.Acquired},
		{do: "abandon", tok: "t1"},
		{do: "abandon", tok: "t1"},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "release", tok: "t1", wantErr: ErrStaleToken},
		{do: "releaseHolder", holder: "hA"},
		{do: "get", state: api.StateIndeterminate},
		{do: "reserve", fp: "A", want: api.Indeterminate},
	}},
	{name: "abandon: stale or wrong token changes nothing", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, oi: api.LeaseRelease, tok: "t1", want: api.Acquired},
		{do: "abandon", tok: "bogus", wantErr: ErrStaleToken},
		{do: "expireLease"},
		{do: "reserve", fp: "A", leaseMS: 60_000, tok: "t2", want: api.Acquired},
		{do: "abandon", tok: "t1", wantErr: ErrStaleToken},
		{do: "get", state: api.StateInProgress},
		{do: "abandon", tok: "t2"},
		{do: "get", state: api.StateIndeterminate},
	}},
	{name: "abandon: an operator's force release frees it", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "abandon", tok: "t1"},
		{do: "forceRelease"},
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "B", tok: "t2", want: api.Acquired},
	}},
	{name: "abandon: ttl expiry makes it absent", steps: []step{
		{do: "reserve", fp: "A", leaseMS: 100, ttlMS: 3000, tok: "t1", want: api.Acquired},
		{do: "abandon", tok: "t1"},
		{do: "reserve", fp: "A", want: api.Indeterminate, maxRemaining: 3100},
		{do: "expireTTL"},
		{do: "reserve", fp: "B", tok: "t2", want: api.Acquired},
	}},

	// completed
	{name: "completed: replays, other fingerprint mismatch", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 201},
		{do: "get", state: api.StateCompleted, wantSt: 201},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 201},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 201},
		{do: "reserve", fp: "B", want: api.Mismatch},
	}},
	{name: "completed: a second complete succeeds and changes nothing; release, abandon are stale", steps: []step{
		{do: "reserve", fp: "A", holder: "hA", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 200},
		{do: "complete", tok: "t1", status: 500},
		{do: "complete", tok: "bogus", status: 500, wantErr: ErrStaleToken},
		{do: "release", tok: "t1", wantErr: ErrStaleToken},
		{do: "abandon", tok: "t1", wantErr: ErrStaleToken},
		{do: "releaseHolder", holder: "hA"},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 200},
	}},
	{name: "completed: any three-digit status is stored", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 600},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 600},
	}},
	{name: "completed: status 999 is stored", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 999},
		{do: "get", state: api.StateCompleted, wantSt: 999},
	}},
	{name: "completed: an operator's delete makes it absent", steps: []step{
		{do: "reserve", fp: "A", tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 201},
		{do: "forceRelease", wantErr: ErrNotInProgress},
		{do: "delete"},
		{do: "get", wantErr: ErrNotFound},
		{do: "delete", wantErr: ErrNotFound},
		{do: "reserve", fp: "B", tok: "t2", want: api.Acquired},
	}},
	{name: "completed: ttl expiry makes it absent", steps: []step{
		{do: "reserve", fp: "A", leaseMS: 100, ttlMS: 3000, tok: "t1", want: api.Acquired},
		{do: "complete", tok: "t1", status: 200},
		{do: "reserve", fp: "A", want: api.Completed, wantSt: 200},
		{do: "expireTTL"},
		{do: "reserve", fp: "B", tok: "t2", want: api.Acquired},
	}},
	{name: "in progress: ttl expiry makes it absent, the token stale", steps: []step{
		{do: "reserve", fp: "A", leaseMS: 1000, ttlMS: 1000, tok: "t1", want: api.Acquired},
		{do: "expireTTL"},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "get", wantErr: ErrNotFound},
	}},

	// release by holder
	{name: "release by holder: no record yet fences that holder out", steps: []step{
		{do: "releaseHolder", holder: "hA"},
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "A", holder: "hA", fenced: true, want: api.InProgress, minRemaining: 60_000, maxRemaining: DefaultFenceTTL.Milliseconds()},
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "B", holder: "hA", fenced: true, want: api.InProgress, maxRemaining: DefaultFenceTTL.Milliseconds()},
		{do: "releaseHolder", holder: "hA"},
		{do: "reserve", fp: "A", holder: "hB", tok: "t2", want: api.Acquired},
		{do: "reserve", fp: "A", holder: "hA", fenced: true, want: api.InProgress, maxRemaining: DefaultFenceTTL.Milliseconds()},
		{do: "reserve", fp: "A", want: api.InProgress},
	}},
	{name: "release by holder: the fence outlives another holder's record", steps: []step{
		{do: "reserve", fp: "A", holder: "hB", tok: "t2", want: api.Acquired},
		{do: "releaseHolder", holder: "hA"},
		{do: "get", state: api.StateInProgress},
		{do: "release", tok: "t2"},
		{do: "reserve", fp: "A", holder: "hA", fenced: true, want: api.InProgress, maxRemaining: DefaultFenceTTL.Milliseconds()},
		{do: "get", wantErr: ErrNotFound},
		{do: "reserve", fp: "A", tok: "t3", want: api.Acquired},
	}},
	{name: "release by holder: frees what that holder holds", steps: []step{
		{do: "reserve", fp: "A", holder: "hA", tok: "t1", want: api.Acquired},
		{do: "releaseHolder", holder: "hA", deleted: true},
		{do: "get", wantErr: ErrNotFound},
		{do: "complete", tok: "t1", status: 200, wantErr: ErrStaleToken},
		{do: "reserve", fp: "A", holder: "hA", fenced: true, want: api.InProgress, maxRemaining: DefaultFenceTTL.Milliseconds()},
		{do: "reserve", fp: "A", holder: "hB", tok: "t2", want: api.Acquired},
	}},
	{name: "release by holder: frees a record its lease end made indeterminate", steps: []step{
		{do: "reserve", fp: "A", leaseMS: shortLease, holder: "hA", tok: "t1", want: api.Acquired},
		{do: "expireLease"},
		{do: "reserve", leaseEnded: true, fp: "A", want: api.Indeterminate},
		{do: "releaseHolder", holder: "hB"},
		{do: "get", state: api.StateIndeterminate},
		{do: "releaseHolder", holder: "hA", deleted: true},
		{do: "get", wantErr: ErrNotFound},
	}},
}

// runScenarios runs every scenario in parallel on s, each on its own key.
func runScenarios(t *testing.T, s *Store) {
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runScenario(t, s, "tenant-sm", fmt.Sprintf("key-%d-{%s}", i, sc.name), sc.steps)
		})
	}
}

// redisNow is Redis's clock, the one leases are judged by.
func redisNow(ctx context.Context, t *testing.T, s *Store) time.Time {
	t.Helper()
	now, err := s.c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// pollFor calls done every 10ms until it answers true, for at most 10s.
func pollFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if done() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("still waiting for %s after 10s", what)
}

func runScenario(t *testing.T, s *Store, scope, key string, steps []step) {
	ctx := testCtx(t)
	tokens := map[string]string{}
	seen := map[string]bool{}
	for i, st := range steps {
		where := fmt.Sprintf("step %d (%s %s%s)", i, st.do, st.tok, st.holder)
		holder := ""
		if st.holder != "" {
			holder = holderID(st.holder)
		}
		switch st.do {
		case "reserve":
			got, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: key, Fingerprint: st.fp,
				LeaseMS: st.leaseMS, TTLMS: st.ttlMS, OnIndeterminate: st.oi, Holder: holder})
			switch {
			case st.fenced:
				if !errors.Is(err, ErrFenced) {
					t.Fatalf("%s: error %v, want ErrFenced", where, err)
				}
			case st.leaseEnded:
				if !errors.Is(err, ErrLeaseEnded) {
					t.Fatalf("%s: error %v, want ErrLeaseEnded", where, err)
				}
			case err != nil:
				t.Fatalf("%s: %v", where, err)
			}
			if got.Outcome != st.want {
				t.Fatalf("%s: outcome %q, want %q (%+v)", where, got.Outcome, st.want, got)
			}
			switch got.Outcome {
			case api.Acquired:
				if st.sameTok != "" {
					if got.Token != tokens[st.sameTok] {
						t.Fatalf("%s: token %q, want the same as %s: %q", where, got.Token, st.sameTok, tokens[st.sameTok])
					}
					break
				}
				if got.Token == "" || seen[got.Token] {
					t.Fatalf("%s: token %q empty or reused", where, got.Token)
				}
				if holder != "" && !strings.HasSuffix(got.Token, "."+holder) {
					t.Fatalf("%s: token %q does not end with .%s", where, got.Token, holder)
				}
				seen[got.Token] = true
				tokens[st.tok] = got.Token
			case api.InProgress, api.Indeterminate:
				remaining, other := got.LeaseRemainingMS, got.ExpiresInMS
				hi := st.leaseMS
				if hi == 0 {
					hi = api.DefaultLease.Milliseconds()
				}
				if got.Outcome == api.Indeterminate {
					remaining, other = got.ExpiresInMS, got.LeaseRemainingMS
					ttl := st.ttlMS
					if ttl == 0 {
						ttl = api.DefaultTTL.Milliseconds()
					}
					lease := st.leaseMS
					if lease == 0 {
						lease = min(api.DefaultLease.Milliseconds(), ttl)
					}
					hi = lease + ttl
				}
				if st.maxRemaining != 0 {
					hi = st.maxRemaining
				}
				if remaining < max(1, st.minRemaining) || remaining > hi || other != 0 {
					t.Fatalf("%s: remaining %dms (other field %d), want in [%d, %d]", where, remaining, other, max(1, st.minRemaining), hi)
				}
			case api.Completed:
				// The replay says how long the record still lives, so that
				// an edge cache keeps it no longer.
				if hi := max(st.ttlMS, api.DefaultTTL.Milliseconds()); got.ExpiresInMS < 1 || got.ExpiresInMS > hi {
					t.Fatalf("%s: completed with expires_in_ms %d, want in [1, %d]", where, got.ExpiresInMS, hi)
				}
				want := responseFor(st.wantSt)
				if got.Response == nil || !reflect.DeepEqual(*got.Response, want) {
					t.Fatalf("%s: response %+v, want %+v", where, got.Response, want)
				}
			}
		case "complete", "release", "abandon":
			tok := tokens[st.tok]
			if tok == "" {
				tok = st.tok // an unknown token, e.g. "bogus"
			}
			before, beforeErr := s.Get(ctx, scope, key, true)
			var err error
			switch st.do {
			case "complete":
				err = s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: key, Token: tok, Response: responseFor(st.status)})
			case "release":
				err = s.Release(ctx, api.ReleaseRequest{Scope: scope, Key: key, Token: tok})
			default:
				err = s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: key, Token: tok})
			}
			if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
				t.Fatalf("%s: error %v, want %v", where, err, st.wantErr)
			}
			if err != nil {
				// A rejected call changes nothing.
				after, afterErr := s.Get(ctx, scope, key, true)
				if !reflect.DeepEqual(before, after) || !errors.Is(afterErr, beforeErr) {
					t.Fatalf("%s: rejected call changed the record:\nbefore %+v %v\nafter  %+v %v", where, before, beforeErr, after, afterErr)
				}
			}
		case "releaseHolder":
			before, beforeErr := s.Get(ctx, scope, key, true)
			deleted, err := s.ReleaseHolder(ctx, scope, key, holder)
			if err != nil || deleted != st.deleted {
				t.Fatalf("%s: deleted %v error %v, want deleted %v", where, deleted, err, st.deleted)
			}
			if !deleted {
				after, afterErr := s.Get(ctx, scope, key, true)
				if !reflect.DeepEqual(before, after) || !errors.Is(afterErr, beforeErr) {
					t.Fatalf("%s: a release by a holder that holds nothing changed the record:\nbefore %+v %v\nafter  %+v %v", where, before, beforeErr, after, afterErr)
				}
			}
		case "get":
			rec, err := s.Get(ctx, scope, key, false)
			if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
				t.Fatalf("%s: error %v, want %v", where, err, st.wantErr)
			}
			if err != nil {
				continue
			}
			if rec.State != st.state || rec.Status != st.wantSt || rec.Scope != scope || rec.Key != key {
				t.Fatalf("%s: record %+v, want state %q status %d", where, rec, st.state, st.wantSt)
			}
			if rec.Response != nil {
				t.Fatalf("%s: Get without body returned a response", where)
			}
			if rec.State == api.StateInProgress && rec.LeaseExpiresAt == nil || rec.State == api.StateCompleted && rec.LeaseExpiresAt != nil {
				t.Fatalf("%s: lease expiry %v for state %q", where, rec.LeaseExpiresAt, rec.State)
			}
		case "delete", "forceRelease":
			var err error
			if st.do == "delete" {
				_, err = s.Delete(ctx, scope, key)
			} else {
				_, err = s.ForceRelease(ctx, scope, key)
			}
			if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
				t.Fatalf("%s: error %v, want %v", where, err, st.wantErr)
			}
		case "expireLease":
			rec, err := s.Get(ctx, scope, key, false)
			if err != nil || rec.LeaseExpiresAt == nil {
				t.Fatalf("%s: record %+v %v has no lease to wait for", where, rec, err)
			}
			pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*rec.LeaseExpiresAt) })
		case "expireTTL":
			pollFor(t, "the record to expire", func() bool {
				_, err := s.Get(ctx, scope, key, false)
				return errors.Is(err, ErrNotFound)
			})
		default:
			t.Fatalf("%s: unknown step", where)
		}
	}
}

func TestStateMachine(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	runScenarios(t, s)
}

// runConcurrentReserves fires n reserves of one key at once: exactly one
// may acquire, all others must see it in progress.
func runConcurrentReserves(t *testing.T, s *Store, n int) {
	ctx := testCtx(t)
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		outcomes = make([]api.ReserveResponse, n)
		errs     = make([]error, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outcomes[i], errs[i] = s.Reserve(ctx, api.ReserveRequest{Scope: "tenant-race", Key: "one-key", Fingerprint: "fp"})
		}()
	}
	close(start)
	wg.Wait()
	counts := map[api.Outcome]int{}
	for i := range outcomes {
		if errs[i] != nil {
			t.Fatalf("reserve %d: %v", i, errs[i])
		}
		counts[outcomes[i].Outcome]++
	}
	if counts[api.Acquired] != 1 || counts[api.InProgress] != n-1 {
		t.Fatalf("outcomes %v, want exactly 1 acquired and %d in_progress", counts, n-1)
	}
}

func TestConcurrentReserveOneKey(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	runConcurrentReserves(t, s, 200)
}

func TestReserveDefaults(t *testing.T) {
	s, _ := newStandalone(t, Options{DefaultLease: 2 * time.Second, DefaultTTL: time.Minute})
	ctx := testCtx(t)
	// A reservation that locks (the default) lives a full TTL past its
	// lease; one that releases lives the TTL.
	tests := []struct {
		oi   string
		life time.Duration
	}{
		{oi: "", life: time.Minute + 2*time.Second},
		{oi: api.LeaseRelease, life: time.Minute},
	}
	for _, tt := range tests {
		key := "k-" + tt.oi
		if _, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "A", OnIndeterminate: tt.oi}); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(ctx, "s", key, false)
		if err != nil {
			t.Fatal(err)
		}
		// Times come from Redis's clock, same host here: allow 100ms skew.
		lease := rec.LeaseExpiresAt.Sub(rec.CreatedAt)
		life := rec.ExpiresAt.Sub(rec.CreatedAt)
		if lease != 2*time.Second || life != tt.life {
			t.Errorf("%q: lease %v expiry after %v, want 2s and %v", tt.oi, lease, life, tt.life)
		}
		if d := time.Since(rec.CreatedAt); d < -100*time.Millisecond || d > 5*time.Second {
			t.Errorf("created %v is not now", rec.CreatedAt)
		}
		pttl, err := s.c.PTTL(ctx, s.RecordKey("s", key)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if pttl <= tt.life-5*time.Second || pttl > tt.life {
			t.Errorf("%q: PTTL %v, want about %v", tt.oi, pttl, tt.life)
		}
	}
}

func TestValidation(t *testing.T) {
	// Validation happens before any Redis call: no server needed.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s := New(c, Options{})
	ctx := testCtx(t)
	long := strings.Repeat("k", api.MaxKeyLen+1)
	reserves := []struct {
		name string
		req  api.ReserveRequest
	}{
		{"empty scope", api.ReserveRequest{Key: "k", Fingerprint: "f"}},
		{"empty key", api.ReserveRequest{Scope: "s", Fingerprint: "f"}},
		{"long key", api.ReserveRequest{Scope: "s", Key: long, Fingerprint: "f"}},
		{"control char in key", api.ReserveRequest{Scope: "s", Key: "a\x00b", Fingerprint: "f"}},
		{"invalid utf-8 scope", api.ReserveRequest{Scope: "\xff", Key: "k", Fingerprint: "f"}},
		{"empty fingerprint", api.ReserveRequest{Scope: "s", Key: "k"}},
		{"fingerprint one byte over", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: strings.Repeat("f", api.MaxFingerprintLen+1)}},
		{"control char in fingerprint", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "sha256:\x01"}},
		{"negative lease", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: -1}},
		{"negative ttl", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", TTLMS: -1}},
		{"ttl below lease", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 1000, TTLMS: 999}},
		{"ttl over the maximum", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", TTLMS: api.MaxTTL.Milliseconds() + 1}},
		{"huge lease", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", LeaseMS: 1 << 62, TTLMS: 1 << 62}},
		{"unknown on_indeterminate", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", OnIndeterminate: "takeover"}},
		{"short holder", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", Holder: "abc"}},
		{"holder with a dot", api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f", Holder: "aaaaaaaa.aaaaaaaa"}},
	}
	for _, tt := range reserves {
		t.Run("reserve "+tt.name, func(t *testing.T) {
			if _, err := s.Reserve(ctx, tt.req); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Reserve error %v, want ErrInvalidRequest", err)
			}
		})
	}
	others := []struct {
		name string
		call func() error
	}{
		{"complete empty token", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Response: api.StoredResponse{Status: 200}})
		}},
		{"complete long token", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: long, Response: api.StoredResponse{Status: 200}})
		}},
		{"complete token one byte over", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: strings.Repeat("t", api.MaxTokenLen+1), Response: api.StoredResponse{Status: 200}})
		}},
		{"abandon token with a control character", func() error {
			return s.Abandon(ctx, api.AbandonRequest{Scope: "s", Key: "k", Token: "1.a\nb"})
		}},
		{"complete status 0", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t"})
		}},
		{"complete status 1000", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 1000}})
		}},
		{"complete status 99", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 99}})
		}},
		{"release by holder, holder too short", func() error {
			_, err := s.ReleaseHolder(ctx, "s", "k", "short")
			return err
		}},
		{"release by holder, holder with a dot", func() error {
			_, err := s.ReleaseHolder(ctx, "s", "k", "aaaaaaaa.aaaaaaaa")
			return err
		}},
		{"release with a holder instead of a token", func() error {
			return s.Release(ctx, api.ReleaseRequest{Scope: "s", Key: "k", Holder: holderID("hA")})
		}},
		{"complete bad scope", func() error {
			return s.Complete(ctx, api.CompleteRequest{Key: "k", Token: "t", Response: api.StoredResponse{Status: 200}})
		}},
		{"complete header name not a token", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 200, Headers: [][2]string{{"a b", "v"}}}})
		}},
		{"complete header name empty", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 200, Headers: [][2]string{{"", "v"}}}})
		}},
		{"complete header value with CR LF", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: "t", Response: api.StoredResponse{Status: 200, Headers: [][2]string{{"x", "a\r\nb"}}}})
		}},
		{"release empty token", func() error { return s.Release(ctx, api.ReleaseRequest{Scope: "s", Key: "k"}) }},
		{"abandon empty token", func() error { return s.Abandon(ctx, api.AbandonRequest{Scope: "s", Key: "k"}) }},
		{"abandon bad scope", func() error { return s.Abandon(ctx, api.AbandonRequest{Key: "k", Token: "t"}) }},
		{"release bad key", func() error { return s.Release(ctx, api.ReleaseRequest{Scope: "s", Token: "t"}) }},
		{"get bad key", func() error { _, err := s.Get(ctx, "s", "", false); return err }},
		{"delete bad scope", func() error { _, err := s.Delete(ctx, "\x7f", "k"); return err }},
		{"force release bad key", func() error { _, err := s.ForceRelease(ctx, "s", long); return err }},
	}
	for _, tt := range others {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestInvalidOptionsFailEveryOperation(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s := New(c, Options{Prefix: "bad{prefix"})
	ctx := testCtx(t)
	_, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f"})
	if !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Reserve error %v, want ErrInvalidOptions", err)
	}
	if _, err := s.Get(ctx, "s", "k", false); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Get error %v, want ErrInvalidOptions", err)
	}
}

func TestResponseCap(t *testing.T) {
	const limit = 100
	s, _ := newStandalone(t, Options{MaxStoredResponse: limit})
	ctx := testCtx(t)
	hdr := [][2]string{{"Content-Type", "text/plain"}} // 22 bytes
	tests := []struct {
		name        string
		resp        api.StoredResponse
		wantOmitted bool
	}{
		{name: "empty body", resp: api.StoredResponse{Status: 204}},
		{name: "exactly at the cap", resp: api.StoredResponse{Status: 200, Headers: hdr, Body: []byte(strings.Repeat("b", limit-3-22))}},
		{name: "one byte over by body", resp: api.StoredResponse{Status: 200, Headers: hdr, Body: []byte(strings.Repeat("b", limit-3-22+1))}, wantOmitted: true},
		{name: "over by headers alone", resp: api.StoredResponse{Status: 200, Headers: [][2]string{{"X-Big", strings.Repeat("h", limit)}}}, wantOmitted: true},
		{name: "binary body kept intact", resp: api.StoredResponse{Status: 200, Body: []byte{0, 1, 2, 0xff, '\r', '\n', 0}}},
		{name: "caller marked omitted", resp: api.StoredResponse{Status: 200, Body: []byte("x"), BodyOmitted: true}, wantOmitted: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("cap-%d", i)
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "A"})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: key, Token: r.Token, Response: tt.resp}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "A"})
			if err != nil {
				t.Fatal(err)
			}
			want := tt.resp
			if tt.wantOmitted {
				want = api.StoredResponse{Status: tt.resp.Status, BodyOmitted: true}
			}
			if got.Outcome != api.Completed || !reflect.DeepEqual(*got.Response, want) {
				t.Fatalf("replay %+v, want %+v", got.Response, want)
			}
			rec, err := s.Get(ctx, "s", key, false)
			if err != nil {
				t.Fatal(err)
			}
			if rec.BodyOmitted != tt.wantOmitted || rec.Status != tt.resp.Status {
				t.Errorf("record %+v, want status %d omitted %v", rec, tt.resp.Status, tt.wantOmitted)
			}
		})
	}
}

func TestAdmin(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	reserve := func(t *testing.T, key, fp string) string {
		t.Helper()
		r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "adm", Key: key, Fingerprint: fp})
		if err != nil || r.Outcome != api.Acquired {
			t.Fatalf("reserve %s: %+v %v", key, r, err)
		}
		return r.Token
	}
	complete := func(t *testing.T, key, tok string) {
		t.Helper()
		if err := s.Complete(ctx, api.CompleteRequest{Scope: "adm", Key: key, Token: tok, Response: responseFor(201)}); err != nil {
			t.Fatal(err)
		}
	}
	abandon := func(t *testing.T, key, tok string) {
		t.Helper()
		if err := s.Abandon(ctx, api.AbandonRequest{Scope: "adm", Key: key, Token: tok}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("get with and without body", func(t *testing.T) {
		complete(t, "get", reserve(t, "get", "FP"))
		rec, err := s.Get(ctx, "adm", "get", false)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != api.StateCompleted || rec.Fingerprint != storedFingerprint(nil, "FP") || rec.Status != 201 || rec.Response != nil || rec.LeaseExpiresAt != nil {
			t.Errorf("record without body %+v", rec)
		}
		if !rec.ExpiresAt.After(rec.CreatedAt) {
			t.Errorf("expires %v not after created %v", rec.ExpiresAt, rec.CreatedAt)
		}
		rec, err = s.Get(ctx, "adm", "get", true)
		if err != nil {
			t.Fatal(err)
		}
		if want := responseFor(201); rec.Response == nil || !reflect.DeepEqual(*rec.Response, want) {
			t.Errorf("record with body %+v, want response %+v", rec.Response, want)
		}
	})

	tests := []struct {
		name    string
		setup   func(t *testing.T, key string) string // returns the holder's token, if any
		op      func(key string) (*api.Record, error)
		wantErr error
		wantRec api.State // state of the returned record; "" for none
		after   error     // Get's error afterwards (nil: still there)
	}{
		{
			name:    "delete in progress",
			setup:   func(t *testing.T, key string) string { return reserve(t, key, "F") },
			op:      func(key string) (*api.Record, error) { return s.Delete(ctx, "adm", key) },
			wantRec: api.StateInProgress,
			after:   ErrNotFound,
		},
		{
			name: "delete completed",
			setup: func(t *testing.T, key string) string {
				tok := reserve(t, key, "F")
				complete(t, key, tok)
				return ""
			},
			op:      func(key string) (*api.Record, error) { return s.Delete(ctx, "adm", key) },
			wantRec: api.StateCompleted,
			after:   ErrNotFound,
		},
		{
			name:    "delete absent",
			op:      func(key string) (*api.Record, error) { return s.Delete(ctx, "adm", key) },
			wantErr: ErrNotFound,
			after:   ErrNotFound,
		},
		{
			name:    "force release in progress",
			setup:   func(t *testing.T, key string) string { return reserve(t, key, "F") },
			op:      func(key string) (*api.Record, error) { return s.ForceRelease(ctx, "adm", key) },
			wantRec: api.StateInProgress,
			after:   ErrNotFound,
		},
		{
			name: "force release completed changes nothing",
			setup: func(t *testing.T, key string) string {
				tok := reserve(t, key, "F")
				complete(t, key, tok)
				return ""
			},
			op:      func(key string) (*api.Record, error) { return s.ForceRelease(ctx, "adm", key) },
			wantErr: ErrNotInProgress,
			wantRec: api.StateCompleted,
		},
		{
			name: "delete indeterminate",
			setup: func(t *testing.T, key string) string {
				tok := reserve(t, key, "F")
				abandon(t, key, tok)
				return tok
			},
			op:      func(key string) (*api.Record, error) { return s.Delete(ctx, "adm", key) },
			wantRec: api.StateIndeterminate,
			after:   ErrNotFound,
		},
		{
			name: "force release indeterminate",
			setup: func(t *testing.T, key string) string {
				tok := reserve(t, key, "F")
				abandon(t, key, tok)
				return tok
			},
			op:      func(key string) (*api.Record, error) { return s.ForceRelease(ctx, "adm", key) },
			wantRec: api.StateIndeterminate,
			after:   ErrNotFound,
		},
		{
			name:    "force release absent",
			op:      func(key string) (*api.Record, error) { return s.ForceRelease(ctx, "adm", key) },
			wantErr: ErrNotFound,
			after:   ErrNotFound,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("admin-%d", i)
			var tok string
			if tt.setup != nil {
				tok = tt.setup(t, key)
			}
			before, _ := s.Get(ctx, "adm", key, true)
			rec, err := tt.op(key)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantRec == "" {
				if rec != nil {
					t.Errorf("record %+v, want none", rec)
				}
			} else if rec == nil || rec.State != tt.wantRec || rec.Fingerprint != storedFingerprint(nil, "F") || rec.Response != nil {
				t.Errorf("record %+v, want state %q fingerprint F and no body", rec, tt.wantRec)
			}
			after, err := s.Get(ctx, "adm", key, true)
			if !errors.Is(err, tt.after) || (err == nil) != (tt.after == nil) {
				t.Fatalf("Get afterwards: %v, want %v", err, tt.after)
			}
			if tt.after == nil && !reflect.DeepEqual(before, after) {
				t.Errorf("record changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if tok != "" {
				// The holder's token is stale now, and the key is free.
				if err := s.Complete(ctx, api.CompleteRequest{Scope: "adm", Key: key, Token: tok, Response: responseFor(200)}); !errors.Is(err, ErrStaleToken) {
					t.Errorf("holder's complete after admin action: %v, want ErrStaleToken", err)
				}
				if r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "adm", Key: key, Fingerprint: "other"}); err != nil || r.Outcome != api.Acquired {
					t.Errorf("reserve after admin action: %+v %v, want acquired", r, err)
				}
			}
		})
	}
}

func TestRecordKey(t *testing.T) {
	s := New(nil, Options{Prefix: "idg"})
	tests := []struct {
		scope, key string
		want       string
	}{
		{"s", "k", "idg:{cw.aw}"},
		{"a{b}", "}{", "idg:{YXtifQ.fXs}"},
		{"tenant", "550e8400-e29b-41d4-a716-446655440000", "idg:{dGVuYW50.NTUwZTg0MDAtZTI5Yi00MWQ0LWE3MTYtNDQ2NjU1NDQwMDAw}"},
	}
	for _, tt := range tests {
		t.Run(tt.scope+"/"+tt.key, func(t *testing.T) {
			got := s.RecordKey(tt.scope, tt.key)
			if got != tt.want {
				t.Errorf("RecordKey = %q, want %q", got, tt.want)
			}
			if strings.Count(got, "{") != 1 || strings.Count(got, "}") != 1 || !strings.HasSuffix(got, "}") {
				t.Errorf("RecordKey %q must hold exactly one hash tag, at its end", got)
			}
		})
	}
	// Distinct (scope, key) pairs never share a record key, even when the
	// concatenations agree.
	if s.RecordKey("ab", "c") == s.RecordKey("a", "bc") {
		t.Error("RecordKey is ambiguous")
	}
}

// scriptKeys are the KEYS of the scripts on a record: the record and its
// reconcile index.
func (s *Store) scriptKeys(scope, key string) []string {
	rk := s.RecordKey(scope, key)
	return []string{rk, s.reconcileIndexKey(rk)}
}

// rawReserve runs the reserve script itself on the record at rk, as a
// go-redis retry would re-run it: lease 10s, TTL 60s, lock, holder h
// (padded to a valid id).
func rawReserve(ctx context.Context, s *Store, rk, fp, h string) *redis.Cmd {
	holder := holderID(h)
	cur, _ := s.fingerprintForms(fp)
	return reserveScript.Run(ctx, s.c, []string{rk, rk + "f." + holder, s.reconcileIndexKey(rk)}, cur, 10_000, 60_000, holder, api.LeaseLock, fp, "")
}

// TestScriptsIdempotentOnRetry re-runs each script with the same arguments,
// as a go-redis retry after a lost reply does: the second run must change
// nothing and, for reserve and complete, answer like the first.
func TestScriptsIdempotentOnRetry(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	k := s.scriptKeys("s", "retry")

	first, err := rawReserve(ctx, s, k[0], "FP", "NONCE1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	again, err := rawReserve(ctx, s, k[0], "FP", "NONCE1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, again) || first[0] != "acquired" {
		t.Fatalf("reserve re-run answered %v, first run %v", again, first)
	}
	other, err := rawReserve(ctx, s, k[0], "FP", "NONCE2").Slice()
	if err != nil || other[0] != "in_progress" {
		t.Fatalf("reserve with another nonce: %v %v, want in_progress", other, err)
	}

	tok := first[1].(string)
	for run := 0; run < 2; run++ {
		n, err := completeScript.Run(ctx, s.c, k, tok, "CALL1", 200, "", "b", "").Int64()
		if err != nil || n != 1 {
			t.Fatalf("complete run %d: %d %v, want 1", run, n, err)
		}
	}
	// A retried Complete call (the filter's, after a lost answer) comes
	// with a fresh call nonce: one token is one attempt with one
	// response, so it is answered success too, and changes nothing.
	n, err := completeScript.Run(ctx, s.c, k, tok, "CALL2", 500, "", "x", "").Int64()
	if err != nil || n != 1 {
		t.Fatalf("another complete call with the same token: %d %v, want 1 (delivered)", n, err)
	}
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "retry", Fingerprint: "FP"})
	if err != nil || r.Outcome != api.Completed || r.Response.Status != 200 || string(r.Response.Body) != "b" {
		t.Fatalf("after retried completes: %+v %v", r, err)
	}

	k2 := s.scriptKeys("s", "retry-release")
	rel, err := rawReserve(ctx, s, k2[0], "FP", "NONCE3").Slice()
	if err != nil {
		t.Fatal(err)
	}
	for run, want := range []int64{1, 0} {
		n, err := releaseScript.Run(ctx, s.c, k2, rel[1]).Int64()
		if err != nil || n != want {
			t.Fatalf("release run %d: %d %v, want %d", run, n, err, want)
		}
	}
}

func TestNoscriptFallback(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	ctx := testCtx(t)
	if _, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k1", Fingerprint: "A"}); err != nil {
		t.Fatal(err)
	}
	// Forget the loaded scripts, as a restart or failover would.
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k2", Fingerprint: "A"})
	if err != nil || r.Outcome != api.Acquired {
		t.Fatalf("reserve after SCRIPT FLUSH: %+v %v", r, err)
	}
	ok, err := srv.Client().ScriptExists(ctx, reserveScript.Hash()).Result()
	if err != nil || !ok[0] {
		t.Fatalf("script not reloaded by the EVAL fallback: %v %v", ok, err)
	}
}

// TestRedisRestart stops Redis mid-test: every operation must fail fast
// with ErrUnavailable, and work again once Redis is back (data gone, as
// persistence is off, and scripts reloaded through the NOSCRIPT fallback).
func TestRedisRestart(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	ctx := testCtx(t)
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "A"})
	if err != nil || r.Outcome != api.Acquired {
		t.Fatalf("reserve: %+v %v", r, err)
	}

	srv.Stop()
	ops := []struct {
		name string
		call func() error
	}{
		{"reserve", func() error {
			_, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "A"})
			return err
		}},
		{"complete", func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: r.Token, Response: responseFor(200)})
		}},
		{"release", func() error { return s.Release(ctx, api.ReleaseRequest{Scope: "s", Key: "k", Token: r.Token}) }},
		{"get", func() error { _, err := s.Get(ctx, "s", "k", false); return err }},
		{"delete", func() error { _, err := s.Delete(ctx, "s", "k"); return err }},
		{"force release", func() error { _, err := s.ForceRelease(ctx, "s", "k"); return err }},
		{"ping", func() error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.call()
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s during outage: %v, want ErrUnavailable", op.name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s during outage took %v, want under 2s", op.name, took)
		}
		t.Logf("%s during outage: %v after %v", op.name, err, took)
	}

	srv.Restart()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if ok, err := srv.Client().ScriptExists(ctx, reserveScript.Hash()).Result(); err != nil || ok[0] {
		t.Fatalf("restarted Redis already has the script (%v %v): the fallback is not tested", ok, err)
	}
	r2, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "A"})
	if err != nil || r2.Outcome != api.Acquired {
		t.Fatalf("reserve after restart: %+v %v, want acquired (data gone)", r2, err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: r.Token, Response: responseFor(200)}); !errors.Is(err, ErrStaleToken) {
		t.Errorf("pre-restart token: %v, want ErrStaleToken", err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "k", Token: r2.Token, Response: responseFor(200)}); err != nil {
		t.Errorf("complete after restart: %v", err)
	}
}

// TestRedisHangs stops Redis (SIGSTOP: it accepts connections but does
// not answer, until the test ends): an operation must fail with
// ErrUnavailable by the client's own timeouts, and a context deadline must
// cut short a client whose read timeout is a minute. The bounds are
// seconds against what would otherwise be a minute, so a loaded machine
// does not reach them.
func TestRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	store := func(o ClientOptions) *Store {
		t.Helper()
		c, err := NewClient("redis://"+srv.Addr(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		s := New(c, Options{})
		if err := s.Ping(ctx); err != nil { // a pooled connection before the stop
			t.Fatal(err)
		}
		return s
	}
	defaults, patient := store(ClientOptions{}), store(ClientOptions{ReadTimeout: time.Minute})
	srv.Pause()
	defer srv.Resume()
	tests := []struct {
		name    string
		s       *Store
		timeout time.Duration // 0: none beyond the test's
		max     time.Duration
	}{
		// Read timeout 500ms, one retry after a short backoff: about 1s.
		{name: "client timeouts", s: defaults, max: 5 * time.Second},
		{name: "context deadline", s: patient, timeout: 100 * time.Millisecond, max: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ctx
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				c, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			_, err := tt.s.Get(c, "s", "paused", false)
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("get on a stopped Redis: %v, want ErrUnavailable", err)
			}
			if took > tt.max {
				t.Errorf("took %v, want under %v", took, tt.max)
			}
			t.Logf("%v after %v", err, took)
		})
	}
}

// TestCompleteRestartsTTL: a definite response is stored and replayed for
// the TTL from the moment it is stored, not from the reserve. A response
// completed near the end of its reservation's life must not vanish at
// once. Every wait is on Redis's clock (the one the scripts use) and
// leaves half the TTL (1.5 s) for a single call: a loaded machine cannot
// close that margin.
func TestCompleteRestartsTTL(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	for _, tt := range []struct {
		name string
		oi   string
	}{
		// The reservation lives its TTL.
		{"release", api.LeaseRelease},
		// The reservation lives its lease plus its TTL.
		{"lock", api.LeaseLock},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStandalone(t, Options{})
			ctx := testCtx(t)
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "late", Fingerprint: "A",
				LeaseMS: 1000, TTLMS: ttl.Milliseconds(), OnIndeterminate: tt.oi})
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v", r, err)
			}
			reserved, err := s.Get(ctx, "s", "late", false)
			if err != nil {
				t.Fatal(err)
			}
			reservedEnd := reserved.ExpiresAt
			// Complete when half the TTL is left of the reservation's life.
			pollFor(t, "the reservation's last half TTL", func() bool {
				return redisNow(ctx, t, s).After(reservedEnd.Add(-ttl / 2))
			})
			before := redisNow(ctx, t, s).Truncate(time.Millisecond) // records keep ms
			if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "late", Token: r.Token, Response: responseFor(201)}); err != nil {
				t.Fatalf("complete with %v of the reservation left: %v", ttl/2, err)
			}
			after := redisNow(ctx, t, s)
			rec, err := s.Get(ctx, "s", "late", false)
			if err != nil {
				t.Fatal(err)
			}
			if lo, hi := before.Add(ttl), after.Add(ttl); rec.ExpiresAt.Before(lo) || rec.ExpiresAt.After(hi) {
				t.Errorf("expires_at %v, want the complete's time + %v, within [%v, %v] (the reservation's end was %v)",
					rec.ExpiresAt, ttl, lo, hi, reservedEnd)
			}
			// The key itself expires then, not only the record's field.
			pexp, err := s.c.Do(ctx, "PEXPIRETIME", s.RecordKey("s", "late")).Int64()
			if err != nil {
				t.Fatal(err)
			}
			// Within 1 ms: the record's exp is TIME (µs, floored to ms) + ttl,
			// the key's PEXPIRE counts from Redis's own millisecond clock.
			if d := pexp - rec.ExpiresAt.UnixMilli(); d < -1 || d > 1 {
				t.Errorf("the key expires at %d ms, the record says %d ms", pexp, rec.ExpiresAt.UnixMilli())
			}
			// Past the reservation's end, the response is still replayed.
			pollFor(t, "the reservation's end", func() bool { return redisNow(ctx, t, s).After(reservedEnd) })
			got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "late", Fingerprint: "A", TTLMS: ttl.Milliseconds()})
			if err != nil {
				t.Fatal(err)
			}
			if got.Outcome != api.Completed || got.Response == nil || got.Response.Status != 201 {
				t.Fatalf("retry past the reservation's end = %+v, want completed (replay)", got)
			}
			if got.ExpiresInMS < 1 || got.ExpiresInMS > ttl.Milliseconds() {
				t.Errorf("replay expires in %d ms, want in [1, %d]", got.ExpiresInMS, ttl.Milliseconds())
			}
		})
	}
}

// TestCompleteOwnRetryKeepsExpiry: a re-run of the complete script with the
// same call nonce (a go-redis retry after a lost reply) answers success and
// leaves the expiry where the first run put it.
func TestCompleteOwnRetryKeepsExpiry(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	k := s.scriptKeys("s", "retry-ttl")
	res, err := rawReserve(ctx, s, k[0], "FP", "NONCE1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	tok := res[1].(string)
	// exp: the record's exp field and when the key expires (Unix ms):
	// absolute times, so the check does not depend on how long the
	// calls took.
	exp := func() (string, int64) {
		t.Helper()
		e, err := s.c.HGet(ctx, k[0], "exp").Result()
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.c.Do(ctx, "PEXPIRETIME", k[0]).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return e, p
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := completeScript.Run(ctx, s.c, k, tok, "CALL1", 200, "", "b", "").Int64(); err != nil || n != 1 {
		t.Fatalf("complete: %d %v", n, err)
	}
	exp1, pexp1 := exp()
	// A restarted expiry would land at least this much later.
	time.Sleep(100 * time.Millisecond)
	if n, err := completeScript.Run(ctx, s.c, k, tok, "CALL1", 200, "", "b", "").Int64(); err != nil || n != 1 {
		t.Fatalf("complete re-run: %d %v", n, err)
	}
	exp2, pexp2 := exp()
	if exp1 != exp2 {
		t.Errorf("re-run moved exp from %s to %s", exp1, exp2)
	}
	if pexp1 != pexp2 {
		t.Errorf("re-run restarted the key's expiry: PEXPIRETIME %d then %d", pexp1, pexp2)
	}
}

// TestReserveLeaseAndTTL: what lease and TTL a reserve gets. A zero lease
// means the default lease, but never more than the TTL: a reserve that
// asks only for a TTL shorter than the default lease gets the TTL as its
// lease instead of a refusal.
func TestReserveLeaseAndTTL(t *testing.T) {
	s, _ := newStandalone(t, Options{DefaultLease: 30 * time.Second, DefaultTTL: time.Hour})
	ctx := testCtx(t)
	tests := []struct {
		name               string
		leaseMS, ttlMS     int64
		wantLease, wantTTL time.Duration // zero wantLease with wantErr
		wantErr            bool
	}{
		{name: "both defaults", wantLease: 30 * time.Second, wantTTL: time.Hour},
		{name: "ttl only, longer than the default lease", ttlMS: 60_000, wantLease: 30 * time.Second, wantTTL: time.Minute},
		{name: "ttl only, shorter than the default lease", ttlMS: 10_000, wantLease: 10 * time.Second, wantTTL: 10 * time.Second},
		{name: "ttl only, equal to the default lease", ttlMS: 30_000, wantLease: 30 * time.Second, wantTTL: 30 * time.Second},
		{name: "ttl only, 1ms", ttlMS: 1, wantLease: time.Millisecond, wantTTL: time.Millisecond},
		{name: "lease only", leaseMS: 5_000, wantLease: 5 * time.Second, wantTTL: time.Hour},
		{name: "both, lease shorter", leaseMS: 5_000, ttlMS: 10_000, wantLease: 5 * time.Second, wantTTL: 10 * time.Second},
		{name: "both, equal", leaseMS: 10_000, ttlMS: 10_000, wantLease: 10 * time.Second, wantTTL: 10 * time.Second},
		{name: "explicit lease longer than ttl", leaseMS: 20_000, ttlMS: 10_000, wantErr: true},
		{name: "explicit lease longer than the default ttl", leaseMS: 2 * time.Hour.Milliseconds(), wantErr: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("lease-ttl-%d", i)
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "A", LeaseMS: tt.leaseMS, TTLMS: tt.ttlMS})
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("reserve: %+v %v, want ErrInvalidRequest", r, err)
				}
				return
			}
			if err != nil || r.Outcome != api.Acquired {
				t.Fatalf("reserve: %+v %v, want acquired", r, err)
			}
			if tt.wantTTL <= time.Millisecond {
				return // gone before it can be read
			}
			rec, err := s.Get(ctx, "s", key, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.LeaseExpiresAt.Sub(rec.CreatedAt); got != tt.wantLease {
				t.Errorf("lease %v, want %v", got, tt.wantLease)
			}
			// The route locks (the default): the record lives a full
			// TTL past its lease.
			if got := rec.ExpiresAt.Sub(rec.CreatedAt); got != tt.wantLease+tt.wantTTL {
				t.Errorf("expiry after %v, want lease + ttl = %v", got, tt.wantLease+tt.wantTTL)
			}
		})
	}
}

// TestReserveUnreadableStoredResponse: a completed record whose stored
// headers cannot be decoded is still completed: the operation ran. Reserve
// answers completed with the status (kept apart) and BodyOmitted, and
// reports ErrUnreadableResponse beside it, never ErrUnavailable: a caller
// that fails open on unavailability would execute the operation again.
func TestReserveUnreadableStoredResponse(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "corrupt", Fingerprint: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "corrupt", Token: r.Token, Response: responseFor(201)}); err != nil {
		t.Fatal(err)
	}
	if err := s.c.HSet(ctx, s.RecordKey("s", "corrupt"), "hdr", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "corrupt", Fingerprint: "A"})
	if !errors.Is(err, ErrUnreadableResponse) || errors.Is(err, ErrUnavailable) {
		t.Errorf("reserve error %v, want ErrUnreadableResponse (and not ErrUnavailable)", err)
	}
	want := api.StoredResponse{Status: 201, BodyOmitted: true}
	if got.Outcome != api.Completed || got.Response == nil || !reflect.DeepEqual(*got.Response, want) {
		t.Errorf("reserve = %+v (response %+v), want completed with %+v", got, got.Response, want)
	}

	// The admin view without body is unaffected; with body it reports the
	// corruption, not an outage.
	if rec, err := s.Get(ctx, "s", "corrupt", false); err != nil || rec.Status != 201 || rec.State != api.StateCompleted {
		t.Errorf("get without body: %+v %v", rec, err)
	}
	if _, err := s.Get(ctx, "s", "corrupt", true); !errors.Is(err, ErrUnreadableResponse) || errors.Is(err, ErrUnavailable) {
		t.Errorf("get with body: %v, want ErrUnreadableResponse", err)
	}
}

// TestAbandonScriptIdempotentOnRetry: a re-run of the abandon script with
// the same call nonce (a go-redis retry after a lost reply) answers success
// and changes nothing; so does another abandon with the same token (the
// filter retries until acknowledged).
func TestAbandonScriptIdempotentOnRetry(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	k := s.scriptKeys("s", "retry-abandon")
	res, err := rawReserve(ctx, s, k[0], "FP", "NONCE1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	tok := res[1].(string)
	for run := 0; run < 2; run++ {
		n, err := abandonScript.Run(ctx, s.c, k, tok, "CALL1", 1000).Int64()
		if err != nil || n != 1 {
			t.Fatalf("abandon run %d: %d %v, want 1", run, n, err)
		}
	}
	before, err := s.c.HGetAll(ctx, k[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A retried abandon is acknowledged and changes nothing more.
	if n, err := abandonScript.Run(ctx, s.c, k, tok, "CALL2", 1000).Int64(); err != nil || n != 1 {
		t.Fatalf("another abandon with the same token: %d %v, want 1", n, err)
	}
	// Nor does a complete's re-run with that nonce pass for this call.
	if n, err := completeScript.Run(ctx, s.c, k, tok, "CALL1", 200, "", "b", "").Int64(); err != nil || n != 0 {
		t.Fatalf("complete with the abandon's nonce: %d %v, want 0", n, err)
	}
	after, err := s.c.HGetAll(ctx, k[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("refused calls changed the record:\nbefore %v\nafter  %v", before, after)
	}
	rec, err := s.Get(ctx, "s", "retry-abandon", false)
	if err != nil || rec.State != api.StateIndeterminate || rec.LeaseExpiresAt != nil {
		t.Errorf("record %+v %v, want indeterminate without a lease", rec, err)
	}
}

// TestLockRouteLeaseEqualsTTL: on a route that locks, a reservation whose
// lease equals its TTL must not vanish when the lease ends: the holder may
// have forwarded the request, so a retry arriving then must find it
// indeterminate, not acquire and run it again; and the holder's late
// complete must still land and be replayed.
func TestLockRouteLeaseEqualsTTL(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	const ms = 300
	for _, oi := range []string{"", api.LeaseLock} {
		t.Run("on_indeterminate="+oi, func(t *testing.T) {
			key := "lease-eq-ttl-" + oi
			req := func(h string) api.ReserveRequest {
				return api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "A", LeaseMS: ms, TTLMS: ms,
					OnIndeterminate: oi, Holder: holderID(h)}
			}
			a, err := s.Reserve(ctx, req("hA"))
			if err != nil || a.Outcome != api.Acquired {
				t.Fatalf("A's reserve: %+v %v", a, err)
			}
			rec, err := s.Get(ctx, "s", key, false)
			if err != nil {
				t.Fatal(err)
			}
			pollFor(t, "the lease to end", func() bool { return redisNow(ctx, t, s).After(*rec.LeaseExpiresAt) })
			b, err := s.Reserve(ctx, req("hB"))
			if b.Outcome != api.Indeterminate || !errors.Is(err, ErrLeaseEnded) {
				t.Fatalf("B's reserve after A's lease ended: %+v %v, want indeterminate (lease ended)", b, err)
			}
			// Redis's TIME (µs, floored) and PTTL (ms) round apart: 2ms slack.
			if b.ExpiresInMS < 1 || b.ExpiresInMS > ms+2 {
				t.Errorf("indeterminate for %dms more, want up to a full TTL (%dms)", b.ExpiresInMS, ms)
			}
			if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: key, Token: a.Token, Response: responseFor(201)}); err != nil {
				t.Fatalf("A's late complete: %v", err)
			}
			c, err := s.Reserve(ctx, req("hC"))
			if err != nil || c.Outcome != api.Completed || c.Response.Status != 201 {
				t.Fatalf("reserve after A's complete: %+v %v, want the replay of 201", c, err)
			}
		})
	}
}

// TestCompletedAnswerCarriesExpiry: a completed answer says how long the
// record still lives (its PTTL), so that a filter caching the replay at
// the edge drops it when the record expires, not a whole edge TTL later.
func TestCompletedAnswerCarriesExpiry(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := testCtx(t)
	const ttl = 60_000
	r, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "exp", Fingerprint: "A", LeaseMS: 1000, TTLMS: ttl})
	if err != nil || r.Outcome != api.Acquired {
		t.Fatalf("reserve: %+v %v", r, err)
	}
	if err := s.Complete(ctx, api.CompleteRequest{Scope: "s", Key: "exp", Token: r.Token, Response: responseFor(200)}); err != nil {
		t.Fatal(err)
	}
	// An operator shortens the record's life: the answer follows Redis.
	for _, pttl := range []int64{0, 1500} {
		if pttl > 0 {
			if err := s.c.PExpire(ctx, s.RecordKey("s", "exp"), time.Duration(pttl)*time.Millisecond).Err(); err != nil {
				t.Fatal(err)
			}
		}
		want := int64(ttl)
		if pttl > 0 {
			want = pttl
		}
		got, err := s.Reserve(ctx, api.ReserveRequest{Scope: "s", Key: "exp", Fingerprint: "A"})
		if err != nil || got.Outcome != api.Completed {
			t.Fatalf("reserve: %+v %v", got, err)
		}
		// PTTL counts down: allow 10s on a loaded machine (less when short).
		if got.ExpiresInMS > want || got.ExpiresInMS < want-min(10_000, want/2) {
			t.Errorf("expires_in_ms %d, want about %d", got.ExpiresInMS, want)
		}
	}
}
