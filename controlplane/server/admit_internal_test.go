package server

import (
	"sync"
	"testing"
	"time"
)

func TestReserveLimitOf(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{1, 1}, {2, 1}, {3, 2}, {4, 3}, {5, 3}, {8, 6}, {64, 48}, {100, 75},
	} {
		if got := reserveLimitOf(tt.n); got != tt.want {
			t.Errorf("reserveLimitOf(%d) = %d, want %d", tt.n, got, tt.want)
		}
		if tt.n >= 2 && reserveLimitOf(tt.n) >= tt.n {
			t.Errorf("reserveLimitOf(%d) leaves outcomes no slot of their own", tt.n)
		}
	}
}

// TestGateSequence admits and sheds per class as slots fill and empty.
func TestGateSequence(t *testing.T) {
	g := newGate(4) // low class: 3
	steps := []struct {
		class admitClass
		leave bool
		want  bool
	}{
		{class: admitLow, want: true},
		{class: admitLow, want: true},
		{class: admitLow, want: true},
		{class: admitLow, want: false}, // 3 in flight: reserves shed
		{class: admitOutcome, want: true},
		{class: admitOutcome, want: false}, // 4: everything shed
		{leave: true},
		{class: admitLow, want: false}, // 3 again: still no reserve
		{class: admitOutcome, want: true},
		{leave: true},
		{leave: true},
		{class: admitLow, want: true}, // 2 → 3
	}
	for i, st := range steps {
		if st.leave {
			g.leave()
			continue
		}
		if got := g.tryEnter(st.class); got != st.want {
			t.Fatalf("step %d: enter(%v) = %v, want %v (in flight %d)", i, st.class, got, st.want, g.inFlight())
		}
	}
	if g.inFlight() != 3 {
		t.Errorf("in flight %d, want 3", g.inFlight())
	}
}

func TestGateUnbounded(t *testing.T) {
	g := newGate(-1)
	for range 1000 {
		if !g.enter(admitLow, 0, nil) {
			t.Fatal("an unbounded gate shed")
		}
	}
	if g.inFlight() != 1000 {
		t.Errorf("in flight %d, want 1000 (counted, for the gauge)", g.inFlight())
	}
}

// TestGateNeverOverAdmits races many goroutines on a small gate: the
// number admitted at once never exceeds the limit.
func TestGateNeverOverAdmits(t *testing.T) {
	const limit, workers, rounds = 5, 32, 2000
	g := newGate(limit)
	var mu sync.Mutex
	inside, peak, admitted := 0, 0, 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := admitClass(w % 2)
			for range rounds {
				if !g.enter(c, time.Millisecond, nil) {
					continue
				}
				mu.Lock()
				inside++
				admitted++
				peak = max(peak, inside)
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				g.leave()
			}
		}()
	}
	wg.Wait()
	if peak > limit || peak == 0 || admitted == 0 {
		t.Errorf("peak %d inside at once (limit %d), %d admitted", peak, limit, admitted)
	}
	if g.inFlight() != 0 || len(g.waiting) != 0 {
		t.Errorf("in flight %d, %d waiting after all left", g.inFlight(), len(g.waiting))
	}
}

// waiters polls until n outcome calls wait at g (bounded).
func waiters(t *testing.T, g *gate, n int) {
	t.Helper()
	for range 30000 {
		g.mu.Lock()
		k := len(g.waiting)
		g.mu.Unlock()
		if k == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("never %d waiters", n)
}

// TestGateHandsFreedSlotToWaitingOutcome: a slot freed while an outcome
// call waits goes to it, not to the next reserve.
func TestGateHandsFreedSlotToWaitingOutcome(t *testing.T) {
	g := newGate(4)
	for _, c := range []admitClass{admitLow, admitLow, admitLow, admitOutcome} {
		if !g.tryEnter(c) {
			t.Fatal("filling the gate")
		}
	}
	got := make(chan bool)
	for range 2 {
		go func() { got <- g.enter(admitOutcome, time.Hour, nil) }()
	}
	waiters(t, g, 2)
	g.leave() // handed to the oldest waiter: still 4 in flight
	if !<-got {
		t.Fatal("the waiting outcome call was not admitted")
	}
	if g.inFlight() != 4 {
		t.Fatalf("in flight %d after a hand-over, want 4", g.inFlight())
	}
	g.leave()
	g.leave() // one to the second waiter, one back: 3
	if !<-got {
		t.Fatal("the second waiting outcome call was not admitted")
	}
	if g.tryEnter(admitLow) {
		t.Error("a reserve was admitted at 3 of 4")
	}
	g.leave() // 2
	if !g.tryEnter(admitLow) {
		t.Error("a reserve was shed at 2 of 4")
	}
}

func TestGateOutcomeWaitEnds(t *testing.T) {
	g := newGate(2)
	g.tryEnter(admitOutcome)
	g.tryEnter(admitOutcome)
	if g.enter(admitOutcome, time.Millisecond, nil) {
		t.Error("admitted beyond the bound after the wait")
	}
	done := make(chan struct{})
	close(done)
	if g.enter(admitOutcome, time.Hour, done) {
		t.Error("admitted though the caller left")
	}
	if g.enter(admitLow, time.Hour, nil) {
		t.Error("a reserve waited and was admitted")
	}
	if len(g.waiting) != 0 || g.inFlight() != 2 {
		t.Errorf("%d waiting, %d in flight; want 0, 2", len(g.waiting), g.inFlight())
	}
}
