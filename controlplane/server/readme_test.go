package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
)

// TestREADMEMatchesCode keeps controlplane/README.md honest: every endpoint
// it documents is served (not 404 or 405), every API path is documented,
// and every JSON example decodes into the wire types with no unknown field.
func TestREADMEMatchesCode(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("(?m)^### `(GET|POST|DELETE) (/[a-z0-9/-]+)`")
	documented := map[string]bool{}
	e := newEnv(t)
	for _, m := range heading.FindAllStringSubmatch(string(doc), -1) {
		method, path := m[1], m[2]
		documented[path] = true
		resp, body := e.do(method, path+"?scope=s&key=k", nil)
		if resp.StatusCode == http.StatusNotFound && !bytes.Contains(body, []byte("record-not-found")) || resp.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("README documents %s %s, the server answers %d: %s", method, path, resp.StatusCode, body)
		}
	}
	for _, p := range []string{api.PathReserve, api.PathComplete, api.PathRelease, api.PathAbandon, api.PathAdminKeys, api.PathAdminRelease, api.PathAdminKeyList, api.PathAdminReconcile, api.PathEdgeEpoch} {
		if !documented[p] {
			t.Errorf("README has no section for %s", p)
		}
	}
	for _, p := range []string{api.PathHealthz, api.PathReadyz, api.PathMetrics} {
		if !strings.Contains(string(doc), p) {
			t.Errorf("README never mentions %s", p)
		}
	}

	// Each line of a json block is one answer of one of these shapes.
	examples := 0
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(nil, 1<<20)
	inJSON := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```json":
			inJSON = true
			continue
		case strings.HasPrefix(line, "```"):
			inJSON = false
			continue
		case !inJSON || strings.TrimSpace(line) == "":
			continue
		}
		examples++
		if !decodesAsOneOf(line, &api.ReserveResponse{}, &api.Result{}, &api.Record{}, &api.AdminResult{}, &api.Problem{}, &api.KeyList{}, &api.EdgeEpoch{}, &api.ReconcileQuery{}, &api.ReconcileAnswer{}) {
			t.Errorf("README example decodes into no wire type without unknown fields: %s", line)
		}
	}
	if examples < 10 {
		t.Errorf("found %d JSON examples in README, want the documented answers", examples)
	}
}

func decodesAsOneOf(line string, targets ...any) bool {
	for _, v := range targets {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if dec.Decode(v) == nil {
			return true
		}
	}
	return false
}
