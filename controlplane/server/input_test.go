package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/controlplane/server"
)

func TestBadInput(t *testing.T) {
	const limit = 100_000
	e := newEnv(t, func(s *setup) { s.opt.MaxRequestBytes = limit })
	long := strings.Repeat("k", 256)
	bigBody := `{"scope":"s","key":"k","token":"t","response":{"status":200,"body":"` + strings.Repeat("A", limit) + `"}}`
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantDetail string
	}{
		{"truncated JSON", "POST", api.PathReserve, `{"scope":"s",`, 400, "malformed JSON"},
		{"syntax error", "POST", api.PathReserve, `{"scope" "s"}`, 400, "malformed JSON at byte offset"},
		{"not an object", "POST", api.PathReserve, `["s"]`, 400, "want an object"},
		{"empty body", "POST", api.PathReserve, ``, 400, "request body is empty"},
		{"trailing data", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f"} {}`, 400, "data after the JSON object"},
		{"unknown field", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","lease":5}`, 400, `unknown field "lease"`},
		{"wrong type", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","lease_ms":"5s"}`, 400, `field "lease_ms": want an integer, got JSON string`},
		{"fractional lease", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","lease_ms":1.5}`, 400, `field "lease_ms"`},
		{"empty scope", "POST", api.PathReserve, `{"scope":"","key":"k","fingerprint":"f"}`, 400, "scope is empty"},
		{"missing key", "POST", api.PathReserve, `{"scope":"s","fingerprint":"f"}`, 400, "key is empty"},
		{"key of 256 bytes", "POST", api.PathReserve, `{"scope":"s","key":"` + long + `","fingerprint":"f"}`, 400, "key is 256 bytes long, more than 255"},
		{"scope of 256 bytes", "POST", api.PathReserve, `{"scope":"` + long + `","key":"k","fingerprint":"f"}`, 400, "scope is 256 bytes long"},
		{"control character in key", "POST", api.PathReserve, `{"scope":"s","key":"a\nb","fingerprint":"f"}`, 400, "key has a control character at byte 1"},
		{"C1 control in scope", "POST", api.PathReserve, `{"scope":"s\u0085","key":"k","fingerprint":"f"}`, 400, "scope has a control character"},
		{"missing fingerprint", "POST", api.PathReserve, `{"scope":"s","key":"k"}`, 400, "fingerprint is empty"},
		{"fingerprint too long", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"` + strings.Repeat("f", 1025) + `"}`, 400, "fingerprint is 1025 bytes long"},
		{"negative lease", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","lease_ms":-1}`, 400, "lease_ms is -1"},
		{"negative ttl", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","ttl_ms":-5}`, 400, "ttl_ms is -5"},
		{"ttl shorter than the lease", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"f","lease_ms":2000,"ttl_ms":1000}`, 400, "ttl 1000ms is shorter than the lease 2000ms"},
		{"complete: no token", "POST", api.PathComplete, `{"scope":"s","key":"k","response":{"status":200}}`, 400, "token is empty"},
		{"complete: no status", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"t","response":{}}`, 400, "response.status 0 is not a three-digit"},
		{"complete: status 1000", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"t","response":{"status":1000}}`, 400, "response.status 1000 is not a three-digit"},
		{"complete: body not base64", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"t","response":{"status":200,"body":"!!"}}`, 400, `field "response.body": not valid base64`},
		{"complete: header not a pair", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"t","response":{"status":200,"headers":[["a"],["b",1]]}}`, 400, `response.headers[0]: want [name, value]`},
		{"complete: unknown nested field", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"t","response":{"status":200,"trailers":[]}}`, 400, `unknown field "trailers"`},
		{"complete: token of 129 bytes", "POST", api.PathComplete, `{"scope":"s","key":"k","token":"` + strings.Repeat("t", 129) + `","response":{"status":200}}`, 400, "token is 129 bytes long"},
		{"release: no token", "POST", api.PathRelease, `{"scope":"s","key":"k"}`, 400, "exactly one of token and holder"},
		{"complete over the size limit", "POST", api.PathComplete, bigBody, 413, "larger than 100000 bytes"},
		{"reserve over its 64 KiB limit", "POST", api.PathReserve, `{"scope":"s","key":"k","fingerprint":"` + strings.Repeat("f", 70_000) + `"}`, 413, "larger than 65536 bytes"},
		{"GET on reserve", "GET", api.PathReserve, ``, 405, "allowed: POST"},
		{"PUT on admin keys", "PUT", api.PathAdminKeys + query("s", "k"), ``, 405, "allowed: GET, DELETE"},
		{"GET on admin release", "GET", api.PathAdminRelease + query("s", "k"), ``, 405, "allowed: POST"},
		{"POST on healthz", "POST", api.PathHealthz, `{}`, 405, "allowed: GET, HEAD"},
		{"unknown path", "POST", "/v1/reserve/", `{}`, 404, "no such endpoint"},
		{"admin: no scope", "GET", api.PathAdminKeys + "?key=k", ``, 400, "scope is empty"},
		{"admin: control character in key", "GET", api.PathAdminKeys + "?scope=s&key=a%00b", ``, 400, "key has a control character"},
		{"admin: unknown parameter", "DELETE", api.PathAdminKeys + query("s", "k", "dryrun=1"), ``, 400, `unknown query parameter "dryrun"`},
		{"admin: body on delete", "DELETE", api.PathAdminKeys + query("s", "k", "body=1"), ``, 400, `unknown query parameter "body"`},
		{"admin: repeated key", "GET", api.PathAdminKeys + query("s", "k", "key=j"), ``, 400, `"key" is given 2 times`},
		{"admin: bad dry_run", "POST", api.PathAdminRelease + query("s", "k", "dry_run=yes"), ``, 400, `"dry_run" is "yes"; want 1 or 0`},
		// A bare flag (or an empty value) is no answer: read as 0 it would
		// run the lookup and apply it, or release, where dry_run was meant.
		{"admin: bare dry_run", "POST", api.PathAdminReconcile + query("s", "k", "dry_run"), ``, 400, `"dry_run" is ""; want 1 or 0`},
		{"admin: empty dry_run", "POST", api.PathAdminRelease + query("s", "k", "dry_run="), ``, 400, `"dry_run" is ""; want 1 or 0`},
		{"admin: malformed query", "GET", api.PathAdminKeys + "?scope=%zz&key=k", ``, 400, "malformed query string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, tt.body)
			p := problemOf(t, resp, body, tt.wantStatus)
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
			if tt.wantStatus == 405 {
				want := strings.TrimPrefix(tt.wantDetail, "allowed: ")
				if got := resp.Header.Get("Allow"); got != want {
					t.Errorf("Allow = %q, want %q", got, want)
				}
			}
		})
	}
	// Nothing above created a record.
	resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", "k"), nil)
	problemOf(t, resp, body, http.StatusNotFound)
}

// A body over the limit is refused also when it comes without a
// Content-Length (chunked), i.e. while it is read.
func TestOversizeChunked(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.opt.MaxRequestBytes = 100_000 })
	big := `{"scope":"s","key":"k","token":"t","response":{"status":200,"body":"` + strings.Repeat("A", 200_000) + `"}}`
	// An io.Reader that is not a *strings.Reader/*bytes.Reader makes the
	// client send it chunked.
	resp, body := e.do(http.MethodPost, api.PathComplete, io.MultiReader(strings.NewReader(big)))
	problemOf(t, resp, body, http.StatusRequestEntityTooLarge)
}

// The default limit carries a complete whose body is at the default cap.
func TestDefaultLimitCarriesACappedBody(t *testing.T) {
	e := newEnv(t)
	tok := e.acquire("s", "cap", "fp")
	body := bytes.Repeat([]byte{0xff}, api.DefaultMaxStoredBody-3-len("content-type")-len("application/octet-stream"))
	req := api.CompleteRequest{Scope: "s", Key: "cap", Token: tok, Response: api.StoredResponse{
		Status: 200, Headers: [][2]string{{"content-type", "application/octet-stream"}}, Body: body}}
	j, _ := json.Marshal(req)
	if int64(len(j)) > server.DefaultMaxRequestBytes(api.DefaultMaxStoredBody) {
		t.Fatalf("a complete at the cap is %d bytes, over the default limit", len(j))
	}
	e.completeWith("s", "cap", tok, req.Response)
	res := e.reserve("s", "cap", "fp")
	if res.Response == nil || res.Response.BodyOmitted || !bytes.Equal(res.Response.Body, body) {
		t.Errorf("a response exactly at the cap was not stored whole")
	}
}

func TestRequestLimits(t *testing.T) {
	for _, tt := range []struct {
		cap         int
		def, minReq int64
	}{
		{1 << 20, 2<<20 + 64<<10, 1398104 + 16<<10},
		{1, 2 + 64<<10, 4 + 16<<10},
		{3, 6 + 64<<10, 4 + 16<<10},
		{4, 8 + 64<<10, 8 + 16<<10},
	} {
		if got := server.DefaultMaxRequestBytes(tt.cap); got != tt.def {
			t.Errorf("DefaultMaxRequestBytes(%d) = %d, want %d", tt.cap, got, tt.def)
		}
		if got := server.MinRequestBytes(tt.cap); got != tt.minReq {
			t.Errorf("MinRequestBytes(%d) = %d, want %d", tt.cap, got, tt.minReq)
		}
		if server.MinRequestBytes(tt.cap) > server.DefaultMaxRequestBytes(tt.cap) {
			t.Errorf("cap %d: the default limit is below the minimum", tt.cap)
		}
	}
}

// TestCompleteHeaders: stored headers are replayed to clients, so complete
// accepts only well-formed ones: each entry exactly [name, value] (JSON
// would otherwise pad ["a"] to ["a",""] and drop a third element), names
// RFC 9110 tokens, values free of CR, LF and NUL. The 400 names the index.
func TestCompleteHeaders(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		headers    string
		wantDetail string // "" = accepted
	}{
		{"ordinary", `[["content-type","application/json"],["location","/p/1"]]`, ""},
		{"empty value, tab, obs-text", `[["x-empty",""],["x-tab","a\tb"],["x-latin","caf\u00e9"]]`, ""},
		{"every tchar", `[["!#$%&'*+-.^_|~09azAZ` + "`" + `","v"]]`, ""},
		{"null", `null`, ""},
		{"none", `[]`, ""},
		{"one element", `[["a"]]`, "response.headers[0]: want [name, value], got 1 element"},
		{"three elements", `[["a","b"],["a","b","c"]]`, "response.headers[1]: want [name, value], got 3 elements"},
		{"empty entry", `[[]]`, "response.headers[0]: want [name, value], got 0 elements"},
		{"null entry", `[["a","b"],null]`, "response.headers[1]: want [name, value]"},
		{"entry not an array", `["a"]`, "response.headers[0]: want [name, value]"},
		{"value not a string", `[["a",1]]`, "response.headers[0]: value is not a string"},
		{"name not a string", `[[null,"v"]]`, "response.headers[0]: name is not a string"},
		{"not an array", `"content-type: x"`, "response.headers: want an array"},
		{"empty name", `[["","v"]]`, "response.headers[0]: name is empty"},
		{"space in name", `[["ok","v"],["a b","v"]]`, "response.headers[1]: name is not an RFC 9110 token"},
		{"colon in name", `[["x:y","v"]]`, "response.headers[0]: name is not an RFC 9110 token"},
		{"pseudo-header", `[[":status","200"]]`, "response.headers[0]: name is not an RFC 9110 token"},
		{"non-ASCII name", `[["caf\u00e9","v"]]`, "response.headers[0]: name is not an RFC 9110 token"},
		{"CR LF in value", `[["x","a\r\nset-cookie: s=1"]]`, "response.headers[0]: value has a CR, LF or NUL at byte 1"},
		{"LF in value", `[["a","b"],["b","c"],["x","a\nb"]]`, "response.headers[2]: value has a CR, LF or NUL"},
		{"NUL in value", `[["x","a\u0000"]]`, "response.headers[0]: value has a CR, LF or NUL at byte 1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "hdr-" + strconv.Itoa(i)
			tok := e.acquire("s", key, "fp")
			body := `{"scope":"s","key":"` + key + `","token":"` + tok + `","response":{"status":200,"headers":` + tt.headers + `}}`
			resp, b := e.do(http.MethodPost, api.PathComplete, body)
			if tt.wantDetail == "" {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("complete = %d %s, want 200", resp.StatusCode, b)
				}
				return
			}
			p := problemOf(t, resp, b, http.StatusBadRequest)
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
			// Refused: the key is still in progress, nothing was stored.
			if res := e.reserve("s", key, "fp"); res.Outcome != api.InProgress {
				t.Errorf("after a refused complete, reserve = %+v, want in_progress", res)
			}
		})
	}
}

// TestSizeLimitBoundary: a body of exactly the limit is served, one byte
// more is 413, whether the client sends a Content-Length (checked before
// reading) or sends it chunked (counted while reading). Bodies are padded
// to size with trailing JSON whitespace, which the decoder accepts.
func TestSizeLimitBoundary(t *testing.T) {
	const maxReq = 100_000
	pad := func(t *testing.T, j []byte, n int64) string {
		t.Helper()
		if int64(len(j)) > n {
			t.Fatalf("body of %d bytes is already over %d", len(j), n)
		}
		return string(j) + strings.Repeat(" ", int(n)-len(j))
	}
	for _, tt := range []struct {
		name   string
		maxReq int64
		path   string
		limit  int64
	}{
		{"reserve at the small limit", maxReq, api.PathReserve, 64 << 10},
		{"release at the small limit", maxReq, api.PathRelease, 64 << 10},
		{"abandon at the small limit", maxReq, api.PathAbandon, 64 << 10},
		{"complete at MaxRequestBytes", maxReq, api.PathComplete, maxReq},
		{"reserve under a MaxRequestBytes below 64 KiB", 20_000, api.PathReserve, 20_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(s *setup) { s.opt.MaxRequestBytes = tt.maxReq })
			n := 0
			// body returns a valid request for tt.path on a fresh key,
			// padded to size bytes.
			body := func(size int64) string {
				n++
				key := "k" + strconv.Itoa(n)
				var v any
				switch tt.path {
				case api.PathReserve:
					v = api.ReserveRequest{Scope: "s", Key: key, Fingerprint: "f"}
				case api.PathRelease:
					v = api.ReleaseRequest{Scope: "s", Key: key, Token: e.acquire("s", key, "f")}
				case api.PathAbandon:
					v = api.AbandonRequest{Scope: "s", Key: key, Token: e.acquire("s", key, "f")}
				case api.PathComplete:
					v = api.CompleteRequest{Scope: "s", Key: key, Token: e.acquire("s", key, "f"),
						Response: api.StoredResponse{Status: 200, Body: bytes.Repeat([]byte("x"), 1000)}}
				}
				j, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				return pad(t, j, size)
			}
			for _, tr := range []struct {
				name string
				wrap func(string) any
			}{
				{"with Content-Length", func(s string) any { return s }},
				// Not a *strings.Reader: the client sends it chunked.
				{"chunked", func(s string) any { return io.MultiReader(strings.NewReader(s)) }},
			} {
				b := body(tt.limit)
				resp, rb := e.do(http.MethodPost, tt.path, tr.wrap(b))
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s, exactly %d bytes = %d %s, want 200", tr.name, len(b), resp.StatusCode, rb)
				}
				b = body(tt.limit + 1)
				resp, rb = e.do(http.MethodPost, tt.path, tr.wrap(b))
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("%s, %d bytes (one over) = %d %s, want 413", tr.name, len(b), resp.StatusCode, rb)
				} else if p := problemOf(t, resp, rb, http.StatusRequestEntityTooLarge); !strings.Contains(p.Detail, "larger than "+strconv.FormatInt(tt.limit, 10)+" bytes") {
					t.Errorf("%s: detail = %q, want the limit %d", tr.name, p.Detail, tt.limit)
				}
			}
		})
	}
}

// TestSizeLimitBeforeReading: a Content-Length over the limit is refused
// before the body is read: the client that declared it and sends nothing
// gets its 413 at once. (net/http, answering a handler that left the
// body unread, first reads up to 256 KiB of it to keep the connection,
// unless the answer closes the connection.)
func TestSizeLimitBeforeReading(t *testing.T) {
	const maxReq = 100_000
	e := newEnv(t, func(s *setup) { s.opt.MaxRequestBytes = maxReq })
	for _, tt := range []struct {
		path  string
		limit int64
	}{
		{api.PathReserve, 64 << 10},
		{api.PathComplete, maxReq},
	} {
		conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			tt.path, token, tt.limit+1)
		if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Errorf("%s with Content-Length %d and no body: no answer before the body (%v)", tt.path, tt.limit+1, err)
		} else if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s with Content-Length %d = %d, want 413", tt.path, tt.limit+1, resp.StatusCode)
		}
		conn.Close()
	}
}
