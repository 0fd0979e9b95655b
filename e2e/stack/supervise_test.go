package stack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// events collects supervision events for a test.
type events chan Event

func (ev events) notify(e Event) { ev <- e }

// next waits (bounded) for the next event of component.
func (ev events) next(t *testing.T, component string) Event {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case e := <-ev:
			if e.Component == component {
				return e
			}
		case <-deadline:
			t.Fatalf("no event for %s within a minute", component)
		}
	}
}

func shProc(dir, name, script string) *proc {
	return &proc{name: name, bin: "/bin/sh", args: []string{"-c", script}, logPath: logPath(dir, name), dir: dir}
}

// A supervised process killed from outside is named and started again;
// one that keeps dying is restarted with backoff, then given up on and
// reported on Failed; Stop during a backoff leaves nothing running.
func TestSupervisor(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		backoff time.Duration
		ready   func(context.Context) error
		run     func(t *testing.T, s *Stack, p *proc, ev events)
	}{
		{
			name:   "killed, restarted",
			script: "sleep 60",
			run: func(t *testing.T, s *Stack, p *proc, ev events) {
				old := p.pid()
				if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if e := ev.next(t, "sleeper"); e.Kind != EventDied || !strings.Contains(e.Err.Error(), "killed") || e.Restarts != 1 {
					t.Errorf("first event %+v, want died (killed), restart 1", e)
				}
				e := ev.next(t, "sleeper")
				if e.Kind != EventBack || e.Pid == 0 || e.Pid == old || e.Pid != p.pid() {
					t.Errorf("second event %+v, want back with a new pid (old %d, now %d)", e, old, p.pid())
				}
				select {
				case err := <-s.Failed():
					t.Errorf("a restarted component was reported failed: %v", err)
				default:
				}
			},
		},
		{
			name:   "crash loop, given up",
			script: "exit 3",
			// Never ready: every run exits before it is.
			ready: func(context.Context) error { return errors.New("not yet") },
			run: func(t *testing.T, s *Stack, p *proc, ev events) {
				var kinds []EventKind
				for {
					e := ev.next(t, "sleeper")
					kinds = append(kinds, e.Kind)
					if e.Kind == EventGaveUp {
						break
					}
					if len(kinds) > 10 {
						t.Fatalf("events %v: never gave up", kinds)
					}
				}
				want := []EventKind{EventDied, EventNoStart, EventGaveUp}
				if strings.Join(kindStrings(kinds), ",") != strings.Join(kindStrings(want), ",") {
					t.Errorf("events %v, want %v (MaxRestarts 2)", kinds, want)
				}
				select {
				case err := <-s.Failed():
					if !strings.Contains(err.Error(), "sleeper exited 3 times") || !strings.Contains(err.Error(), "exit status 3") {
						t.Errorf("Failed: %v", err)
					}
				case <-time.After(time.Minute):
					t.Fatal("giving up was not reported on Failed")
				}
				if p.pid() != 0 {
					t.Error("a given-up component is running")
				}
			},
		},
		{
			name:    "stopped during the backoff",
			script:  "sleep 60",
			backoff: time.Hour,
			run: func(t *testing.T, s *Stack, p *proc, ev events) {
				if err := syscall.Kill(p.pid(), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if e := ev.next(t, "sleeper"); e.Kind != EventDied || e.Delay != time.Hour {
					t.Fatalf("event %+v, want died with an hour's delay", e)
				}
				s.Stop() // the supervisor leaves its backoff and starts nothing
				if p.pid() != 0 {
					t.Error("running after Stop")
				}
				select {
				case e := <-ev:
					t.Errorf("event after Stop: %v", e)
				default:
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := make(events, 16)
			backoff := tt.backoff
			if backoff == 0 {
				backoff = time.Millisecond
			}
			s := newStack(Config{RestartBackoff: backoff, MaxRestarts: 2, Notify: ev.notify})
			t.Cleanup(s.Stop)
			dir := t.TempDir()
			p := shProc(dir, "sleeper", tt.script)
			p.ready = tt.ready
			s.controlplane = p // so that Stop stops it
			s.supervise(p)
			if err := p.start(); err != nil {
				t.Fatal(err)
			}
			tt.run(t, s, p, ev)
		})
	}
}

func kindStrings(ks []EventKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n    int
		want time.Duration
	}{
		{1, 200 * time.Millisecond}, {2, 400 * time.Millisecond}, {3, 800 * time.Millisecond},
		{5, 3200 * time.Millisecond}, {6, maxRestartBackoff}, {100, maxRestartBackoff},
	}
	for _, tt := range tests {
		if got := backoff(200*time.Millisecond, tt.n); got != tt.want {
			t.Errorf("backoff(200ms, %d) = %v, want %v", tt.n, got, tt.want)
		}
	}
	// A first delay above the cap (the demo's, for people) is kept, not doubled.
	for _, n := range []int{1, 2, 10} {
		if got := backoff(8*time.Second, n); got != 8*time.Second {
			t.Errorf("backoff(8s, %d) = %v, want 8s", n, got)
		}
	}
}

// The whole stack, supervised (as make demo runs it): the control plane,
// the upstream and the private redis-server are each killed with SIGKILL;
// each is named, restarts on its address, and the gateway keeps running
// throughout; then the gateway itself is killed and comes back. While the control plane is down (held down here by not
// returning from Notify), the gateway replays a completed key from its
// edge cache and answers a new key 503.
func TestSupervisedStackSurvivesKills(t *testing.T) {
	free := func() string {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ev := make(events, 64)
	hold := make(chan struct{}) // Notify keeps a dead control plane down until hold closes
	notify := func(e Event) {
		ev <- e
		if e.Component == RoleControlPlane && e.Kind == EventDied {
			<-hold
		}
	}
	build := filepath.Join("..", "..", "build")
	st, err := Start(testCtx(t), Config{
		BinDir: build, LogDir: t.TempDir(), Wasm: filepath.Join(build, "idempotency.wasm"),
		Policy:      filepath.Join("..", "..", "plugin", "policy", "testdata", "demo.json"),
		GatewayAddr: free(), ControlPlaneAddr: free(), UpstreamAddr: free(),
		Gateway: GatewayHost, Supervise: true, Notify: notify,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)
	var release sync.Once
	releaseHold := func() { release.Do(func() { close(hold) }) }
	t.Cleanup(releaseHold) // before Stop, which waits for a Notify held here
	if st.Pid(RoleRedis) == 0 {
		t.Fatal("no private redis-server pid: is redis-server installed?")
	}
	gw := "http://" + st.cfg.GatewayAddr + "/payments"
	gwPid := st.Pid(RoleGateway)

	if r := payment(t, gw, "k-before", 201); r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first payment replayed: %v", r.Header)
	}
	// A replay with the control plane up fills the edge cache in case the
	// complete came before the gateway's VM knew the edge epoch (its first
	// poll, milliseconds after start).
	if r := payment(t, gw, "k-before", 201); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay with the control plane up: %v", r.Header)
	}

	old := st.Pid(RoleControlPlane)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := ev.next(t, RoleControlPlane); e.Kind != EventDied || !strings.Contains(e.String(), "controlplane died") {
		t.Fatalf("event %v, want the control plane named as died", e)
	}
	// Down now, and held down until hold closes.
	if r := payment(t, gw, "k-before", 201); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay with the control plane down: %v, want an edge replay", r.Header)
	}
	if r := payment(t, gw, "k-during", 503); r.Header.Get("Retry-After") == "" {
		t.Errorf("new key with the control plane down: 503 without Retry-After")
	}
	releaseHold()
	if e := ev.next(t, RoleControlPlane); e.Kind != EventBack || e.Pid == old {
		t.Fatalf("event %v, want the control plane back with a new pid", e)
	}
	payment(t, gw, "k-after-cp", 201)

	for _, role := range []string{RoleUpstream, RoleRedis, RoleGateway} {
		if role == RoleGateway {
			if got := st.Pid(RoleGateway); got != gwPid {
				t.Errorf("gateway pid %d, was %d: it must keep running while the others restart", got, gwPid)
			}
		}
		old := st.Pid(role)
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := ev.next(t, role); e.Kind != EventDied {
			t.Fatalf("%s: event %v, want died", role, e)
		}
		if e := ev.next(t, role); e.Kind != EventBack || e.Pid == old {
			t.Fatalf("%s: event %v, want back with a new pid", role, e)
		}
		// The control plane reconnects to Redis by itself: bounded polling.
		var last *http.Response
		for i := 0; i < 100; i++ {
			if last = post(t, gw, "k-after-"+role); last.StatusCode == 201 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if last.StatusCode != 201 {
			t.Fatalf("after %s came back: %s, want 201", role, last.Status)
		}
	}
	select {
	case err := <-st.Failed():
		t.Errorf("Failed: %v", err)
	default:
	}
}

func post(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"amount":1000,"currency":"EUR"}`))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func payment(t *testing.T, url, key string, want int) *http.Response {
	t.Helper()
	r := post(t, url, key)
	if r.StatusCode != want {
		t.Fatalf("key %s: %s, want %d", key, r.Status, want)
	}
	return r
}

// What the demo prints for each event names the component and says what
// happens next.
func TestEventString(t *testing.T) {
	exit := errors.New("signal: killed")
	tests := []struct {
		e    Event
		want string
	}{
		{Event{Component: "controlplane", Kind: EventDied, Err: exit, Delay: 5 * time.Second, Restarts: 1, Log: "cp.log"},
			"controlplane died (signal: killed); restarting it in 5s (restart 1); its log: cp.log"},
		{Event{Component: "controlplane", Kind: EventNoStart, Err: exit, Delay: 10 * time.Second, Restarts: 2, Log: "cp.log"},
			"controlplane failed to restart (signal: killed); restarting it in 10s (restart 2); its log: cp.log"},
		{Event{Component: "upstream", Kind: EventBack, Pid: 42}, "upstream is back (pid 42)"},
		{Event{Component: "redis", Kind: EventGaveUp, Err: exit, Restarts: 5, Log: "r.log"},
			"redis keeps dying (signal: killed after 5 restarts): not restarting it again; its log: r.log"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%s %s:\n got %q\nwant %q", tt.e.Component, tt.e.Kind, got, tt.want)
		}
	}
}
