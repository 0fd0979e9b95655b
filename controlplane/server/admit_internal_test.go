package server

import (
	"sync"
	"testing"
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
		if got := g.enter(st.class); got != st.want {
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
		if !g.enter(admitLow) {
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
				if !g.enter(c) {
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
	if g.inFlight() != 0 {
		t.Errorf("in flight %d after all left", g.inFlight())
	}
}
