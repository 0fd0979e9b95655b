package server_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
)

// TestRequestBounds: a reserve's fingerprint and an admin list's limit are
// accepted at both ends of their bounds and refused one past them; the
// fingerprint's control characters end exactly where C0, DEL and C1 end
// (api.ValidateFingerprint, as the server applies it).
func TestRequestBounds(t *testing.T) {
	e := newEnv(t)
	for i, tt := range []struct {
		name, fp string
		status   int
	}{
		{"longest fingerprint", strings.Repeat("f", api.MaxFingerprintLen), http.StatusOK},
		{"one byte longer", strings.Repeat("f", api.MaxFingerprintLen+1), http.StatusBadRequest},
		{"U+001F", "a\u001f", http.StatusBadRequest},
		{"U+0020", "a\u0020b", http.StatusOK},
		{"U+007E", "a\u007e", http.StatusOK},
		{"U+007F", "a\u007f", http.StatusBadRequest},
		{"U+0080", "a\u0080", http.StatusBadRequest},
		{"U+009F", "a\u009f", http.StatusBadRequest},
		{"U+00A0", "a\u00a0", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(http.MethodPost, api.PathReserve, api.ReserveRequest{Scope: "s", Key: fmt.Sprintf("fp-%d", i), Fingerprint: tt.fp})
			if resp.StatusCode != tt.status {
				t.Errorf("reserve with fingerprint %q = %d %s, want %d", tt.fp, resp.StatusCode, body, tt.status)
			}
		})
	}
	for _, tt := range []struct {
		limit  int
		status int
	}{{1, http.StatusOK}, {api.MaxListLimit, http.StatusOK}, {api.MaxListLimit + 1, http.StatusBadRequest}, {0, http.StatusBadRequest}} {
		resp, body := e.do(http.MethodGet, api.PathAdminKeyList+"?state=in_progress&limit="+strconv.Itoa(tt.limit), nil)
		if resp.StatusCode != tt.status {
			t.Errorf("list with limit %d = %d %s, want %d", tt.limit, resp.StatusCode, body, tt.status)
		}
	}
}
