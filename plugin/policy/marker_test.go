package policy

import "testing"

// TestMarkerHeaders: replay_header and not_executed_header share one
// check (responseMarker) but each keeps its own default, exemption and
// whole error message; a rule swapped between them shows here.
func TestMarkerHeaders(t *testing.T) {
	const prefix = "invalid idempotency configuration: routes[0]."
	tests := []struct {
		name, extra string
		replayed    string // the route's ReplayedHeader, when accepted
		notExecuted string // and NotExecutedHeader
		err         string // else the whole error after prefix
	}{
		{"defaults", ``, DefaultReplayedHeader, DefaultNotExecutedHeader, ""},
		{"both named", `"replay_header": "X-Replayed", "not_executed_header": "X-Not-Run"`, "x-replayed", "x-not-run", ""},
		{"replay default spelled out", `"replay_header": "Idempotent-Replayed"`, DefaultReplayedHeader, DefaultNotExecutedHeader, ""},
		{"not-executed default spelled out", `"not_executed_header": "Idempotency-Not-Executed"`, DefaultReplayedHeader, DefaultNotExecutedHeader, ""},
		{"not-executed as the replay default", `"not_executed_header": "Idempotent-Replayed"`, "", "",
			"not_executed_header: idempotent-replayed is a header responses need; the not-executed header is removed from every response"},
		{"replay pseudo", `"replay_header": ":status"`, "", "",
			`replay_header: want a response header name, not a pseudo-header, got ":status"`},
		{"not-executed pseudo", `"not_executed_header": ":status"`, "", "",
			`not_executed_header: want a response header name, not a pseudo-header, got ":status"`},
		{"replay framing", `"replay_header": "Date"`, "", "",
			"replay_header: date is a header the replay frames, dates or must never carry"},
		{"not-executed framing", `"not_executed_header": "Set-Cookie"`, "", "",
			"not_executed_header: set-cookie is a header responses need; the not-executed header is removed from every response"},
		{"replay replayed", `"replay_header": "Location"`, "", "",
			"replay_header: location is a replayed header (replay_headers or the safe default): a replay would carry it twice"},
		{"not-executed replayed", `"not_executed_header": "Location"`, "", "",
			"not_executed_header: location is a replayed header (replay_headers or the safe default); the not-executed header is removed from every response"},
		{"replay as not-executed", `"not_executed_header": "x-m", "replay_header": "X-M"`, "", "",
			"replay_header: x-m is the route's not_executed_header, which the filter removes from its responses"},
		{"replay as the not-executed default", `"replay_header": "Idempotency-Not-Executed"`, "", "",
			"replay_header: idempotency-not-executed is the route's not_executed_header, which the filter removes from its responses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := `"on_indeterminate": "lock"`
			if tt.extra != "" {
				extra += ", " + tt.extra
			}
			c, err := Parse([]byte(withRoute(extra)))
			if tt.err != "" {
				if err == nil || err.Error() != prefix+tt.err {
					t.Errorf("error = %v\nwant %s%s", err, prefix, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Routes[0]; r.ReplayedHeader != tt.replayed || r.NotExecutedHeader != tt.notExecuted {
				t.Errorf("replayed %q, not executed %q; want %q, %q", r.ReplayedHeader, r.NotExecutedHeader, tt.replayed, tt.notExecuted)
			}
		})
	}
}
