package server_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/internal/syncbuf"
)

// TestLogLevels: a request's line has the level logRequest documents, at
// the boundaries (400 is a refusal, 500 a failure); a path of an unknown
// endpoint and a caller's request id are cut to their bounds. Operators
// alert on ERROR and WARN, so a level off by one class hides a fault.
func TestLogLevels(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.opt.AdminToken = adminToken })
	longPath := "/" + strings.Repeat("p", 300)
	longID := strings.Repeat("r", 200)
	for _, tt := range []struct {
		name, method, path string
		body               any
		authz, id          string
		status             int
		level              string
	}{
		{"success", http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "lv", Fingerprint: "f"}, "", "id-ok", 200, "DEBUG"},
		{"bad input is 400", http.MethodPost, api.PathReserve, "{", "", "id-400", 400, "INFO"},
		{"no such endpoint", http.MethodGet, longPath, nil, "", "id-404", 404, "INFO"},
		{"method not allowed", http.MethodGet, api.PathReserve, nil, "", "id-405", 405, "INFO"},
		{"wrong token", http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "lv", Fingerprint: "f"}, "Bearer wrong-token-xyz", "id-401", 401, "WARN"},
		{"filter token on an admin endpoint", http.MethodGet, api.PathAdminKeys + query("s", "lv"), nil, "", "id-403", 403, "WARN"},
		{"long request id", http.MethodGet, api.PathHealthz, nil, "", longID, 200, "DEBUG"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			authz := tt.authz
			if authz == "" {
				authz = "Bearer " + token // the filter's
			}
			resp, body := e.do(tt.method, tt.path, tt.body, "Authorization", authz, "X-Request-Id", tt.id)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			id := tt.id[:min(len(tt.id), 128)]
			lines := logLines(t, e.logs.String(), map[string]string{"request_id": id})
			if len(lines) != 1 {
				t.Fatalf("%d log lines with request_id %q, want 1:\n%s", len(lines), id, e.logs.String())
			}
			if lines[0]["level"] != tt.level {
				t.Errorf("level = %v, want %s", lines[0]["level"], tt.level)
			}
			if p, ok := lines[0]["path"].(string); tt.status == 404 && (!ok || p != longPath[:256]) {
				t.Errorf("logged path = %q, want the first 256 bytes of the path", p)
			}
		})
	}
}

// TestPanicLogsError: a handler's panic is a 500, logged at ERROR like any
// failure of the control plane.
func TestPanicLogsError(t *testing.T) {
	logs := &syncbuf.Buffer{}
	e := panicEnv(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: "k", Fingerprint: "f"})
	problemOf(t, resp, body, http.StatusInternalServerError)
	var levels []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "request" {
			levels = append(levels, m["level"].(string))
		}
	}
	if len(levels) != 1 || levels[0] != "ERROR" {
		t.Errorf("request lines' levels = %v, want [ERROR]\n%s", levels, logs.String())
	}
}
