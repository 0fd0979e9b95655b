package store

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/redistest"
)

// hashSlot is a key's Cluster slot: the CRC of its hash tag (what lies
// between the first '{' and the next '}', when not empty) or of the whole
// key, modulo 16384.
func hashSlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return keySlot(key)
}

// checkHashSlot asks Redis for the slot of every key (one pipeline) and
// fails unless hashSlot agrees.
func checkHashSlot(ctx context.Context, t *testing.T, c *redis.Client, keys []string) {
	t.Helper()
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.ClusterKeySlot(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	for i, k := range keys {
		if got, want := int(cmds[i].Val()), hashSlot(k); got != want {
			t.Fatalf("CLUSTER KEYSLOT %q = %d, hashSlot says %d", k, got, want)
		}
	}
}

// keysInSlot returns n keys of scope whose records land in slot (each
// checked with CLUSTER KEYSLOT through c), named prefix + a number. The
// search CRCs only the changing tail: the tag is base64(scope) + "." +
// base64(key), and the CRC runs left to right.
func keysInSlot(ctx context.Context, t *testing.T, s *Store, c *redis.Client, scope, prefix string, slot, n int) []string {
	t.Helper()
	enc := base64.RawURLEncoding
	head := crc16(0, []byte(enc.EncodeToString([]byte(scope))+"."))
	var keys, recs []string
	buf := make([]byte, 0, 64)
	out := make([]byte, 0, 128)
	for i := 0; len(keys) < n; i++ {
		if i > 200_000_000 {
			t.Fatalf("no %d keys found in slot %d", n, slot)
		}
		buf = strconv.AppendInt(append(buf[:0], prefix...), int64(i), 10)
		out = out[:enc.EncodedLen(len(buf))]
		enc.Encode(out, buf)
		if int(crc16(head, out)%16384) == slot {
			k := string(buf)
			keys = append(keys, k)
			recs = append(recs, s.RecordKey(scope, k))
		}
	}
	checkHashSlot(ctx, t, c, recs)
	for _, r := range recs {
		if hashSlot(r) != slot {
			t.Fatalf("record %q is not in slot %d", r, slot)
		}
	}
	return keys
}

// monitor follows MONITOR on one node: every command the node runs,
// those a script runs included (shown as "[0 lua]").
type monitor struct {
	addr  string
	conn  net.Conn
	mu    sync.Mutex
	lines []string
	err   error
}

func startMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := r.ReadString('\n'); err != nil || strings.TrimSpace(l) != "+OK" {
		t.Fatalf("MONITOR on %s: %q %v", addr, l, err)
	}
	_ = conn.SetDeadline(time.Time{})
	m := &monitor{addr: addr, conn: conn}
	go func() {
		for {
			l, err := r.ReadString('\n')
			m.mu.Lock()
			if err != nil {
				m.err = err
				m.mu.Unlock()
				return
			}
			m.lines = append(m.lines, strings.TrimSuffix(strings.TrimPrefix(l, "+"), "\r\n"))
			m.mu.Unlock()
		}
	}()
	return m
}

// until returns the lines before the one that ECHOes marker (and drops
// them and it), waiting for it.
func (m *monitor) until(t *testing.T, marker string) []string {
	t.Helper()
	want := `"echo" "` + marker + `"` // commands appear as the client spelt them
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		for i, l := range m.lines {
			if strings.HasSuffix(strings.ToLower(l), want) {
				out := append([]string(nil), m.lines[:i]...)
				m.lines = m.lines[i+1:]
				m.mu.Unlock()
				return out
			}
		}
		err := m.err
		m.mu.Unlock()
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("MONITOR on %s: marker %q not seen (%v)", m.addr, marker, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// parseMonitorLine splits a MONITOR line,
//
//	1701460000.123456 [0 127.0.0.1:5555] "EVALSHA" "ab\x01" "2" …
//
// into its source ("127.0.0.1:5555" or "lua") and its arguments, undoing
// Redis's quoting (\\ \" \n \r \t \a \b \xHH).
func parseMonitorLine(l string) (source string, args []string, err error) {
	open := strings.IndexByte(l, '[')
	end := strings.IndexByte(l, ']')
	if open < 0 || end < open {
		return "", nil, fmt.Errorf("no [db source] in %q", l)
	}
	if _, src, ok := strings.Cut(l[open+1:end], " "); ok {
		source = src
	}
	rest := l[end+1:]
	for {
		rest = strings.TrimLeft(rest, " ")
		if rest == "" {
			return source, args, nil
		}
		if rest[0] != '"' {
			return "", nil, fmt.Errorf("argument not quoted at %q", rest)
		}
		var b strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] != '\\' {
				b.WriteByte(rest[i])
				continue
			}
			i++
			if i >= len(rest) {
				return "", nil, fmt.Errorf("dangling escape in %q", l)
			}
			switch rest[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'x':
				if i+2 >= len(rest) {
					return "", nil, fmt.Errorf("short \\x in %q", l)
				}
				v, err := strconv.ParseUint(rest[i+1:i+3], 16, 8)
				if err != nil {
					return "", nil, fmt.Errorf("bad \\x in %q", l)
				}
				b.WriteByte(byte(v))
				i += 2
			default:
				b.WriteByte(rest[i])
			}
		}
		if i >= len(rest) {
			return "", nil, fmt.Errorf("unterminated argument in %q", l)
		}
		args = append(args, b.String())
		rest = rest[i+1:]
	}
}

// slotChecker turns MONITOR lines into the keys they touch (COMMAND
// GETKEYS: Redis's own key specs, for any command a script may call) and
// their slots (CLUSTER KEYSLOT).
type slotChecker struct {
	c *redis.Client // any node: both commands are local computations
}

// touched is one command seen: its line and its keys' slots.
type touched struct {
	line  string
	keys  []string
	slots []int
}

func (sc slotChecker) keysOf(ctx context.Context, t *testing.T, lines []string) []touched {
	t.Helper()
	// Two pipelines (GETKEYS for every line, then KEYSLOT for every key):
	// ClaimDue on a Cluster runs a command per slot.
	type parsed struct {
		line string
		cmd  *redis.Cmd
	}
	var ps []parsed
	pipe := sc.c.Pipeline()
	for _, l := range lines {
		_, args, err := parseMonitorLine(l)
		if err != nil {
			t.Fatal(err)
		}
		if len(args) < 2 {
			continue // a command alone names no key (TIME, PING…)
		}
		q := []any{"COMMAND", "GETKEYS"}
		for _, a := range args {
			q = append(q, a)
		}
		ps = append(ps, parsed{line: l, cmd: pipe.Do(ctx, q...)})
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	var out []touched
	pipe = sc.c.Pipeline()
	var slots [][]*redis.IntCmd
	for _, p := range ps {
		keys, err := p.cmd.StringSlice()
		if err != nil {
			// Commands without keys (CLUSTER SLOTS, WAIT, INFO, TIME,
			// ECHO, EVALSHA with 0 keys…) are refused by GETKEYS.
			msg := err.Error()
			if strings.Contains(msg, "no key arguments") || strings.Contains(msg, "Invalid arguments") ||
				strings.Contains(msg, "Invalid command") {
				continue
			}
			t.Fatalf("COMMAND GETKEYS for %q: %v", p.line, err)
		}
		out = append(out, touched{line: p.line, keys: keys})
		var cs []*redis.IntCmd
		for _, k := range keys {
			cs = append(cs, pipe.ClusterKeySlot(ctx, k))
		}
		slots = append(slots, cs)
	}
	if _, err := pipe.Exec(ctx); err != nil && len(out) > 0 {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	for i := range out {
		for _, c := range slots[i] {
			out[i].slots = append(out[i].slots, int(c.Val()))
		}
	}
	return out
}

// distinctSlots lists the slots of all the commands, sorted, each once.
func distinctSlots(ts []touched) []int {
	seen := map[int]bool{}
	var out []int
	for _, tc := range ts {
		for _, s := range tc.slots {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Ints(out)
	return out
}

// testScriptsTouchOneSlot runs every operation of the store on the cluster
// with MONITOR on each master, and checks from what the masters ran (the
// scripts' own commands included, not just the keys the store declares)
// that each operation touched one slot only, the record's for an
// operation on a record. An operation added to Store without a row here
// fails the test, and so does a script that reaches a key of another
// slot, even one it does not declare in KEYS (checked on a planted
// script first, so the check is known to see such keys).
func testScriptsTouchOneSlot(t *testing.T, cl *redistest.Cluster, s *Store) {
	// Longer than testCtx: ClaimDue's row runs (and the check reads back)
	// a command per slot, 16384, slow under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	masters := cl.Masters(t)
	mons := make([]*monitor, len(masters))
	for i, m := range masters {
		mons[i] = startMonitor(t, m.Addr())
	}
	sc := slotChecker{c: masters[0].Client()}
	seq := 0
	// observe runs f and returns what every master ran meanwhile.
	observe := func(f func() error) ([]touched, error) {
		t.Helper()
		err := f()
		seq++
		marker := fmt.Sprintf("idemgate-slot-check-%d", seq)
		var lines []string
		for i, m := range masters {
			if err := m.Client().Echo(ctx, marker).Err(); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, mons[i].until(t, marker)...)
		}
		return sc.keysOf(ctx, t, lines), err
	}

	// The planted script: KEYS[1] declared, a key of another slot on the
	// same master written behind the store's back. Redis 7.0 runs it (a
	// script without flags may reach undeclared keys of its node); the
	// check must see both slots.
	m0 := masters[0]
	//lint:ignore SA1019 the test reads the slot map the way the store and go-redis do (CLUSTER SLOTS)
	slots, err := m0.Client().ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var a, b string
	for i := 0; b == ""; i++ {
		k := fmt.Sprintf("planted-%d", i)
		owner := ""
		for _, r := range slots {
			if hs := hashSlot(k); hs >= r.Start && hs <= r.End {
				owner = r.Nodes[0].Addr
			}
		}
		switch {
		case owner != m0.Addr():
		case a == "":
			a = k
		case hashSlot(k) != hashSlot(a):
			b = k
		}
	}
	checkHashSlot(ctx, t, m0.Client(), []string{a, b})
	ts, err := observe(func() error {
		return m0.Client().Eval(ctx, "redis.call('SET', KEYS[1], '1') redis.call('SET', ARGV[1], '1') return 1", []string{a}, b).Err()
	})
	if err != nil {
		t.Fatalf("planted script: %v", err)
	}
	if got := distinctSlots(ts); len(got) != 2 {
		t.Fatalf("planted script touching %q and %q: the check saw slots %v in %v, want both", a, b, got, ts)
	}
	_ = m0.Client().Del(ctx, a, b)

	const scope = "slot-check"
	req := func(key, holder, fp string) api.ReserveRequest {
		return api.ReserveRequest{Scope: scope, Key: key, Fingerprint: fp, Holder: holderID(holder), LeaseMS: 60000, TTLMS: 120000}
	}
	toks := map[string]string{}
	var pend Pending
	reserve := func(key, holder, fp string) func() error {
		return func() error {
			r, err := s.Reserve(ctx, req(key, holder, fp))
			if r.Outcome == api.Acquired {
				toks[key] = r.Token
			}
			if errors.Is(err, ErrFenced) {
				return nil
			}
			return err
		}
	}
	expectErr := func(f func() error, want error) func() error {
		return func() error {
			if err := f(); !errors.Is(err, want) {
				return fmt.Errorf("got %v, want %v", err, want)
			}
			return nil
		}
	}
	ignore := func(f func() (*api.Record, error), want error) func() error {
		return expectErr(func() error { _, err := f(); return err }, want)
	}
	type row struct {
		method string // the Store method it exercises
		key    string // the record it works on; "" for none
		list   bool   // many records: one slot per command, not per operation
		do     func() error
	}
	rows := []row{
		{"Reserve", "a", false, reserve("a", "h1", "A")},
		{"Reserve", "a", false, reserve("a", "h2", "A")}, // in progress
		{"Complete", "a", false, func() error {
			return s.Complete(ctx, api.CompleteRequest{Scope: scope, Key: "a", Token: toks["a"], Response: responseFor(200)})
		}},
		{"Reserve", "a", false, reserve("a", "h3", "A")}, // completed
		{"Reserve", "a", false, reserve("a", "h3", "B")}, // mismatch
		{"Reserve", "b", false, reserve("b", "h1", "A")},
		{"Release", "b", false, func() error {
			return s.Release(ctx, api.ReleaseRequest{Scope: scope, Key: "b", Token: toks["b"]})
		}},
		{"Reserve", "c", false, reserve("c", "h1", "A")},
		{"ReleaseHolder", "c", false, func() error { _, err := s.ReleaseHolder(ctx, scope, "c", holderID("h1")); return err }},
		{"Reserve", "c", false, reserve("c", "h1", "A")}, // fenced
		{"Reserve", "d", false, reserve("d", "h1", "A")},
		{"Abandon", "d", false, func() error {
			return s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "d", Token: toks["d"]})
		}},
		{"Get", "a", false, func() error { _, err := s.Get(ctx, scope, "a", true); return err }},
		{"Reserve", "e", false, reserve("e", "h1", "A")},
		{"ReleaseUnlessLeased", "e", false, ignore(func() (*api.Record, error) { return s.ReleaseUnlessLeased(ctx, scope, "e") }, ErrLeaseLive)},
		{"DeleteUnlessLeased", "e", false, ignore(func() (*api.Record, error) { return s.DeleteUnlessLeased(ctx, scope, "e") }, ErrLeaseLive)},
		{"ForceRelease", "e", false, ignore(func() (*api.Record, error) { return s.ForceRelease(ctx, scope, "e") }, nil)},
		{"ForceRelease", "a", false, ignore(func() (*api.Record, error) { return s.ForceRelease(ctx, scope, "a") }, ErrNotInProgress)},
		{"Delete", "a", false, ignore(func() (*api.Record, error) { return s.Delete(ctx, scope, "a") }, nil)},
		{"Reserve", "f", false, func() error {
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "f", Fingerprint: "A", Holder: holderID("h1"),
				OnIndeterminate: api.LeaseReconcile, LeaseMS: 60000, TTLMS: 120000})
			toks["f"] = r.Token
			return err
		}},
		{"Abandon", "f", false, func() error {
			return s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "f", Token: toks["f"]})
		}},
		{"Reserve", "f", false, reserve("f", "h2", "A")}, // indeterminate, reconcile_in_ms
		{"LoadForReconcile", "f", false, func() error {
			p, _, ok, err := s.LoadForReconcile(ctx, scope, "f")
			if err == nil && !ok {
				err = fmt.Errorf("not reconcilable")
			}
			pend = p
			return err
		}},
		{"Postpone", "f", false, func() error { return s.Postpone(ctx, pend, time.Minute, api.ReconcileUnknown) }},
		{"ApplyExecuted", "f", false, func() error {
			ok, err := s.ApplyExecuted(ctx, pend, responseFor(201))
			if err == nil && !ok {
				err = fmt.Errorf("not applied")
			}
			return err
		}},
		{"Reserve", "g", false, func() error {
			r, err := s.Reserve(ctx, api.ReserveRequest{Scope: scope, Key: "g", Fingerprint: "A", Holder: holderID("h1"),
				OnIndeterminate: api.LeaseReconcile, LeaseMS: 60000, TTLMS: 120000})
			toks["g"] = r.Token
			return err
		}},
		{"Abandon", "g", false, func() error {
			return s.Abandon(ctx, api.AbandonRequest{Scope: scope, Key: "g", Token: toks["g"]})
		}},
		{"ApplyNotExecuted", "g", false, func() error {
			ok, err := s.ApplyNotExecuted(ctx, Pending{Scope: scope, Key: "g", Token: toks["g"]})
			if err == nil && !ok {
				err = fmt.Errorf("not applied")
			}
			return err
		}},
		{"ClaimDue", "", true, func() error {
			_, err := s.ClaimDue(ctx, 10, time.Minute)
			return err
		}},
		{"List", "", true, func() error {
			_, _, err := s.List(ctx, api.StateIndeterminate, "", "", 100)
			return err
		}},
		{"EdgeEpoch", "", false, func() error { _, err := s.EdgeEpoch(ctx); return err }},
		{"BumpEdgeEpoch", "", false, func() error { _, err := s.BumpEdgeEpoch(ctx); return err }},
		{"Ping", "", false, func() error { return s.Ping(ctx) }},
		{"Ready", "", false, func() error { return s.Ready(ctx) }},
		{"Topology", "", false, func() error { _, err := s.Topology(ctx); return err }},
		{"CheckDurability", "", false, func() error { _, err := s.CheckDurability(ctx); return err }},
	}
	// Methods that run nothing on Redis of their own.
	exempt := map[string]string{
		"RecordKey":     "pure function",
		"WatchTopology": "calls Topology in a loop",
	}
	covered := map[string]bool{}
	for i, r := range rows {
		covered[r.method] = true
		ts, err := observe(r.do)
		if err != nil {
			t.Fatalf("row %d %s %q: %v", i, r.method, r.key, err)
		}
		if r.list {
			for _, tc := range ts {
				if len(distinctSlots([]touched{tc})) > 1 {
					t.Errorf("row %d %s: one command touched slots %v: %s", i, r.method, tc.slots, tc.line)
				}
			}
			continue
		}
		got := distinctSlots(ts)
		if len(got) > 1 {
			t.Errorf("row %d %s %q touched %d slots %v:\n%v", i, r.method, r.key, len(got), got, ts)
			continue
		}
		if r.key != "" {
			want := hashSlot(s.RecordKey(scope, r.key))
			if len(got) != 1 || got[0] != want {
				t.Errorf("row %d %s %q touched slots %v, want the record's slot %d:\n%v", i, r.method, r.key, got, want, ts)
			}
		}
	}
	st := reflect.TypeOf(s)
	for i := 0; i < st.NumMethod(); i++ {
		name := st.Method(i).Name
		if !covered[name] && exempt[name] == "" {
			t.Errorf("Store.%s has no row in the slot check: add one (or say why it runs nothing on Redis)", name)
		}
	}
}
