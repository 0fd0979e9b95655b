package chaos

import (
	"net/http"
	"path/filepath"
	"testing"
)

// fieldsPolicy holds the routes of the policy fields issue 10 adds
// (allow_anonymous, host_aliases, indeterminate_statuses), on a gateway of
// their own so that the chaos policy parses whatever the filter accepts.
const fieldsPolicy = "../testdata/chaos-fields.json"

// The policy fields issue 10 adds, end to end: what each changes in what
// a client sees and what the upstream executes.
func TestIssue10PolicyFields(t *testing.T) {
	showLogsOnFailure(t)
	pol, err := filepath.Abs(fieldsPolicy)
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, "gateway-fields", gatewayOpts{policy: pol})
	waitGoverned(t, gw.url)

	// allow_anonymous: callers without a principal are one principal, as
	// documented; they are not refused.
	t.Run("allow_anonymous", func(t *testing.T) {
		key := random(t, "anon-")
		p := payment{gateway: gw.url, host: "anon.chaos.test", key: key, auth: "Bearer one", body: `{"amount":301}`}
		before := executions(t)
		first := mustSend(t, p)
		if first.status != http.StatusCreated || first.replayed() {
			t.Fatalf("anonymous caller on an allow_anonymous route: %v, want 201 executed", first)
		}
		p.auth = "Bearer another"
		if again := mustSend(t, p); !again.replayed() || again.id() != first.id() {
			t.Errorf("second anonymous caller: %v, want the shared anonymous scope's replay of %s", again, first.id())
		}
		if got := executions(t) - before; got != 1 {
			t.Errorf("executions +%d, want +1", got)
		}
	})

	// host_aliases: the named hosts share records; another host of the
	// same route does not.
	t.Run("host_aliases", func(t *testing.T) {
		p := payment{gateway: gw.url, host: "a.alias.chaos.test", key: random(t, "alias-"), auth: random(t, "Bearer alias-"), body: `{"amount":302}`}
		before := executions(t)
		a := mustSend(t, p)
		if a.status != http.StatusCreated || a.replayed() {
			t.Fatalf("a.alias: %v, want 201 executed", a)
		}
		p.host = "b.alias.chaos.test"
		if b := mustSend(t, p); !b.replayed() || b.id() != a.id() {
			t.Errorf("b.alias, an alias of a.alias: %v, want the replay of %s", b, a.id())
		}
		p.host = "c.alias.chaos.test"
		if c := mustSend(t, p); c.replayed() || c.id() == a.id() {
			t.Errorf("c.alias, not an alias: %v, got a.alias's payment %s", c, a.id())
		}
		if got := executions(t) - before; got != 2 {
			t.Errorf("executions +%d, want +2 (a.alias once, c.alias once)", got)
		}
	})

	// indeterminate_statuses: ["5xx"] holds every 5xx as indeterminate,
	// a 500 after executing included.
	t.Run("indeterminate_statuses", func(t *testing.T) {
		p := payment{gateway: gw.url, host: "held5xx.chaos.test", key: random(t, "held-"), auth: random(t, "Bearer held-"), body: `{"amount":303}`,
			headers: hdrFailAfter(500)}
		before := executions(t)
		if first := mustSend(t, p); first.status != http.StatusInternalServerError {
			t.Fatalf("first: %v, want the upstream's 500", first)
		}
		p.headers = nil
		if retry := mustSend(t, p); !retry.indeterminate() {
			t.Errorf("retry after a 500 on a route holding 5xx as indeterminate: %v, want 409 indeterminate", retry)
		}
		if got := executions(t) - before; got != 1 {
			t.Errorf("executions +%d, want +1", got)
		}
	})
}
