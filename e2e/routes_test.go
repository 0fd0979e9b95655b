package e2e

import (
	"net/http"
	"testing"
)

// TestRoutesPickedByEnvoy: the gateway's router (testdata/routes.json,
// rendered into Envoy's bootstrap or given to the local host) picks the
// policy route: /routed/meta/ by its metadata, naming the policy route
// "routed-payments" (which marks replays X-Idempotent-Replayed), and
// /routed/name/ by its route name, which a policy route's match.route_name
// selects. Other /routed/ paths no policy route governs.
func TestRoutesPickedByEnvoy(t *testing.T) {
	showLogsOnFailure(t)
	auth := random(t, "Bearer ")
	metaKey, nameKey := random(t, "k-"), random(t, "k-")
	body := `{"amount":1000,"currency":"EUR"}`
	steps := []struct {
		name     string
		p        payment
		status   int
		executed int64  // upstream executions this step adds
		replayed string // the header that must say "true"; "" neither
	}{
		{name: "metadata: governed, the key is required", p: payment{path: "/routed/meta/pay", noKey: true}, status: http.StatusBadRequest},
		{name: "metadata: executes", p: payment{path: "/routed/meta/pay", key: metaKey}, status: http.StatusCreated, executed: 1},
		{name: "metadata: replayed, marked by the route's replay_header", p: payment{path: "/routed/meta/pay", key: metaKey}, status: http.StatusCreated, replayed: "X-Idempotent-Replayed"},
		{name: "route name: governed, the key is required", p: payment{path: "/routed/name/pay", noKey: true}, status: http.StatusBadRequest},
		{name: "route name: executes", p: payment{path: "/routed/name/pay", key: nameKey}, status: http.StatusCreated, executed: 1},
		{name: "route name: replayed", p: payment{path: "/routed/name/pay", key: nameKey}, status: http.StatusCreated, replayed: "Idempotent-Replayed"},
		{name: "neither: not governed", p: payment{path: "/routed/other", noKey: true}, status: http.StatusCreated, executed: 1},
	}
	for _, s := range steps {
		s.p.auth, s.p.body = auth, body
		before := executions(t)
		a := mustSend(t, s.p)
		if a.status != s.status {
			t.Fatalf("%s: %v, want %d", s.name, a, s.status)
		}
		wantExecuted(t, before, s.executed)
		for _, h := range []string{"Idempotent-Replayed", "X-Idempotent-Replayed"} {
			want := ""
			if h == s.replayed {
				want = "true"
			}
			if got := a.header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", s.name, h, got, want)
			}
		}
	}
}
