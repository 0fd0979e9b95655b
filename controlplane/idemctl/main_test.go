package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idemgate/idemgate/plugin/canon"
)

// invocation is the outcome of one run.
type invocation struct {
	code           int
	stdout, stderr string
}

func invoke(t *testing.T, stdin string, args ...string) invocation {
	t.Helper()
	return invokeReader(t, strings.NewReader(stdin), args...)
}

func invokeReader(t *testing.T, stdin io.Reader, args ...string) invocation {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, stdin, &stdout, &stderr)
	return invocation{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRun(t *testing.T) {
	canonical := readFixture(t, "payment.canonical.json")
	payment := readFixture(t, "payment.json")
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout *string  // exact, when set
		wantStderr []string // substrings
	}{
		{name: "canon stdin", args: []string{"canon"}, stdin: `{"b":1,"a":2}`, wantStdout: ptr(`{"a":2,"b":1}` + "\n")},
		{name: "canon dash is stdin", args: []string{"canon", "-"}, stdin: payment, wantStdout: &canonical},
		{name: "canon file", args: []string{"canon", "testdata/payment.json"}, wantStdout: &canonical},
		{name: "canon reordered file", args: []string{"canon", "testdata/payment_reordered.json"}, wantStdout: &canonical},
		{name: "canon after --", args: []string{"canon", "--", "testdata/payment.json"}, wantStdout: &canonical},
		{
			name: "canon invalid JSON", args: []string{"canon", "testdata/invalid.json"}, wantCode: 2, wantStdout: ptr(""),
			wantStderr: []string{"idemctl: testdata/invalid.json: invalid JSON at byte offset 14"},
		},
		{
			name: "canon duplicate name", args: []string{"canon", "testdata/duplicate.json"}, wantCode: 2, wantStdout: ptr(""),
			wantStderr: []string{`idemctl: testdata/duplicate.json: duplicate member name at byte offset 7: "a"` + "\n"},
		},
		{
			name: "canon invalid stdin", args: []string{"canon"}, stdin: `[1,2`, wantCode: 2,
			wantStderr: []string{"idemctl: stdin: invalid JSON at byte offset"},
		},
		{
			// Issue 10, case 7: ids that share a double keep their digits,
			// and the deviation from RFC 8785 is named on stderr.
			name: "canon exact numbers", args: []string{"canon"}, stdin: `{"b":[1e-400],"account":1234567890123456789}`,
			wantStdout: ptr(`{"account":1234567890123456789,"b":[1e-400]}` + "\n"),
			wantStderr: []string{"2 numbers kept exact, not as RFC 8785 writes them", "at byte offsets 6, 24:"},
		},
		{
			name: "canon one exact number", args: []string{"canon"}, stdin: `[9007199254740993]`,
			wantStdout: ptr(`[9007199254740993]` + "\n"),
			wantStderr: []string{"1 number kept exact", "at byte offset 1:"},
		},
		{name: "canon number that round-trips", args: []string{"canon"}, stdin: `[9007199254740992, 1e-7]`, wantStdout: ptr(`[9007199254740992,1e-7]` + "\n")},
		{name: "canon empty input", args: []string{"canon"}, wantCode: 2, wantStderr: []string{"stdin: invalid JSON at byte offset 0"}},
		{
			name: "canon missing file", args: []string{"canon", "testdata/missing.json"}, wantCode: 1, wantStdout: ptr(""),
			wantStderr: []string{"testdata/missing.json", "no such file"},
		},
		{name: "canon directory", args: []string{"canon", "testdata"}, wantCode: 1, wantStderr: []string{"testdata: is a directory"}},
		{name: "canon two files", args: []string{"canon", "a.json", "b.json"}, wantCode: 2, wantStderr: []string{"at most one FILE", "usage: idemctl canon"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantStdout: ptr(""), wantStderr: []string{`unknown command "frobnicate"`, "usage: idemctl COMMAND"}},
		{name: "no command", wantCode: 2, wantStderr: []string{"no command given", "usage: idemctl COMMAND"}},
		{name: "flag before command", args: []string{"--pretty", "canon"}, wantCode: 2, wantStderr: []string{"flags go after the command name"}},
		{name: "unknown flag", args: []string{"canon", "--pretty"}, wantCode: 2, wantStderr: []string{"-pretty", "usage: idemctl canon"}},
		{name: "help unknown topic", args: []string{"help", "frobnicate"}, wantCode: 2, wantStdout: ptr(""), wantStderr: []string{`unknown help topic "frobnicate"`}},
		{
			name: "fingerprint missing path", args: []string{"fingerprint", "testdata/payment.json"}, wantCode: 2, wantStdout: ptr(""),
			wantStderr: []string{"--path is required", "usage: idemctl fingerprint"},
		},
		{
			name: "fingerprint wildcard exclude", args: []string{"fingerprint", "--path", "/payments", "--exclude", "a.*", "testdata/payment.json"}, wantCode: 2,
			wantStderr: []string{`exclude path "a.*"`, "usage: idemctl fingerprint"},
		},
		{
			name: "fingerprint empty include", args: []string{"fingerprint", "--path", "/payments", "--include", "", "testdata/payment.json"}, wantCode: 2,
			wantStderr: []string{`include path ""`},
		},
		{
			name: "fingerprint bad header name", args: []string{"fingerprint", "--path", "/p", "--header", "X Tenant: t1", "testdata/payment.json"}, wantCode: 2,
			wantStderr: []string{`header name "X Tenant"`},
		},
		{name: "fingerprint empty method", args: []string{"fingerprint", "--path", "/p", "--method", "", "testdata/payment.json"}, wantCode: 2, wantStderr: []string{"--method"}},
		{
			name: "fingerprint invalid body", args: []string{"fingerprint", "--path", "/p", "testdata/duplicate.json"}, wantCode: 2,
			wantStderr: []string{`idemctl: testdata/duplicate.json: duplicate member name at byte offset 7: "a"`},
		},
		{name: "fingerprint missing file", args: []string{"fingerprint", "--path", "/p", "testdata/missing.json"}, wantCode: 1, wantStderr: []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := invoke(t, tt.stdin, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit status = %d, want %d (stderr %q)", got.code, tt.wantCode, got.stderr)
			}
			if tt.wantStdout != nil && got.stdout != *tt.wantStdout {
				t.Errorf("stdout = %q, want %q", got.stdout, *tt.wantStdout)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr = %q, want it to contain %q", got.stderr, s)
				}
			}
			if tt.wantCode == 0 && len(tt.wantStderr) == 0 && got.stderr != "" {
				t.Errorf("stderr = %q on success, want empty", got.stderr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// jsonOutput is the union of the --json objects.
type jsonOutput struct {
	OK             bool   `json:"ok"`
	Canonical      string `json:"canonical"`
	ExactNumbers   []int  `json:"exact_numbers"`
	Fingerprint    string `json:"fingerprint"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	NormalizedPath string `json:"normalized_path"`
	Error          *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Offset  *int   `json:"offset"`
	} `json:"error"`
}

func TestJSONOutput(t *testing.T) {
	canonical := strings.TrimSuffix(readFixture(t, "payment.canonical.json"), "\n")
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantErr    string // error code; "" for success
		wantOffset *int
		check      func(t *testing.T, out jsonOutput)
	}{
		{
			name: "canon success", args: []string{"canon", "--json", "testdata/payment.json"},
			check: func(t *testing.T, out jsonOutput) {
				if out.Canonical != canonical {
					t.Errorf("canonical = %q, want %q", out.Canonical, canonical)
				}
				if out.ExactNumbers == nil || len(out.ExactNumbers) != 0 {
					t.Errorf("exact_numbers = %#v, want []", out.ExactNumbers)
				}
			},
		},
		{
			name: "canon exact numbers", args: []string{"canon", "--json"}, stdin: `{"b":[1e-400],"account":1234567890123456789}`,
			check: func(t *testing.T, out jsonOutput) {
				if want := `{"account":1234567890123456789,"b":[1e-400]}`; out.Canonical != want {
					t.Errorf("canonical = %q, want %q", out.Canonical, want)
				}
				if want := []int{6, 24}; !slices.Equal(out.ExactNumbers, want) {
					t.Errorf("exact_numbers = %v, want %v", out.ExactNumbers, want)
				}
			},
		},
		{
			name: "canon success, flag after file", args: []string{"canon", "-", "--json"}, stdin: `"<&>\u00e9"`,
			check: func(t *testing.T, out jsonOutput) {
				if want := `"<&>é"`; out.Canonical != want {
					t.Errorf("canonical = %q, want %q", out.Canonical, want)
				}
			},
		},
		{name: "duplicate name", args: []string{"canon", "--json", "testdata/duplicate.json"}, wantCode: 2, wantErr: "duplicate_name", wantOffset: ptr(7)},
		{name: "invalid JSON", args: []string{"canon", "testdata/invalid.json", "--json"}, wantCode: 2, wantErr: "invalid_json", wantOffset: ptr(14)},
		{name: "invalid UTF-8", args: []string{"canon", "--json"}, stdin: "[\"a\xff\"]", wantCode: 2, wantErr: "invalid_utf8", wantOffset: ptr(3)},
		{name: "lone surrogate", args: []string{"canon", "--json"}, stdin: `["\ud800"]`, wantCode: 2, wantErr: "lone_surrogate", wantOffset: ptr(2)},
		{name: "number range", args: []string{"canon", "--json"}, stdin: `[1e999]`, wantCode: 2, wantErr: "number_range", wantOffset: ptr(1)},
		{name: "too deep", args: []string{"canon", "--json"}, stdin: strings.Repeat("[", canon.MaxDepth+1) + strings.Repeat("]", canon.MaxDepth+1), wantCode: 2, wantErr: "too_deep"},
		{name: "missing file", args: []string{"canon", "--json", "testdata/missing.json"}, wantCode: 1, wantErr: "io"},
		{name: "unknown command", args: []string{"frobnicate", "--json"}, wantCode: 2, wantErr: "usage"},
		{name: "flag before command", args: []string{"--json", "canon"}, wantCode: 2, wantErr: "usage"},
		{name: "unknown flag", args: []string{"canon", "--json", "--pretty"}, wantCode: 2, wantErr: "usage"},
		{name: "unknown flag before --json", args: []string{"canon", "--pretty", "--json"}, wantCode: 2, wantErr: "usage"},
		{name: "missing path", args: []string{"fingerprint", "--json"}, wantCode: 2, wantErr: "usage"},
		{name: "invalid exclude", args: []string{"fingerprint", "--json", "--path", "/p", "--exclude", "a.*"}, wantCode: 2, wantErr: "usage"},
		{name: "fingerprint invalid body", args: []string{"fingerprint", "--json", "--path", "/p"}, stdin: `{"a":1,"a":2}`, wantCode: 2, wantErr: "duplicate_name", wantOffset: ptr(7)},
		{
			name: "fingerprint success", args: []string{"fingerprint", "--json", "--method", "put", "--path", "/p/./1?b=2&a=1", "testdata/payment.json"},
			check: func(t *testing.T, out jsonOutput) {
				want, err := canon.Fingerprint(canon.Request{Method: "PUT", Target: "/p/./1?b=2&a=1", ContentType: "application/json", Body: []byte(readFixture(t, "payment.json"))}, canon.Selection{})
				if err != nil {
					t.Fatal(err)
				}
				got := [4]string{out.Fingerprint, out.Method, out.Path, out.NormalizedPath}
				if w := [4]string{want, "PUT", "/p/./1?b=2&a=1", "/p/1?a=1&b=2"}; got != w {
					t.Errorf("fingerprint, method, path, normalized_path = %q, want %q", got, w)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := invoke(t, tt.stdin, tt.args...)
			if got.code != tt.wantCode {
				t.Errorf("exit status = %d, want %d", got.code, tt.wantCode)
			}
			if got.stderr != "" {
				t.Errorf("stderr = %q, want empty with --json", got.stderr)
			}
			out := decodeOne(t, got.stdout)
			if out.OK != (tt.wantErr == "") {
				t.Errorf("ok = %v, want %v", out.OK, tt.wantErr == "")
			}
			if tt.wantErr != "" {
				checkError(t, out, tt.wantErr, tt.wantOffset)
				return
			}
			if out.Error != nil {
				t.Errorf("error = %+v on success", out.Error)
			}
			tt.check(t, out)
		})
	}
}

// decodeOne decodes stdout, which must hold exactly one JSON object.
func decodeOne(t *testing.T, stdout string) jsonOutput {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var out jsonOutput
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if dec.More() {
		t.Fatalf("stdout %q holds more than one JSON value", stdout)
	}
	return out
}

func checkError(t *testing.T, out jsonOutput, code string, offset *int) {
	t.Helper()
	if out.Error == nil {
		t.Fatal("no error object")
	}
	if out.Error.Code != code {
		t.Errorf("error.code = %q, want %q", out.Error.Code, code)
	}
	if out.Error.Message == "" {
		t.Error("error.message is empty")
	}
	isCanon := !slices.Contains([]string{"usage", "io", "too_large", "internal"}, code)
	switch {
	case isCanon && out.Error.Offset == nil:
		t.Error("error.offset missing for a refused document")
	case !isCanon && out.Error.Offset != nil:
		t.Errorf("error.offset = %d, want none for %s", *out.Error.Offset, code)
	case offset != nil && *out.Error.Offset != *offset:
		t.Errorf("error.offset = %d, want %d", *out.Error.Offset, *offset)
	}
}

// TestFingerprintMatchesCanon holds the CLI to canon.Fingerprint called
// directly with the same inputs, so that idemctl cannot drift from the filter.
func TestFingerprintMatchesCanon(t *testing.T) {
	payment := []byte(readFixture(t, "payment.json"))
	tests := []struct {
		name string
		args []string // after "fingerprint", before the body file
		body []byte
		req  canon.Request // Body is filled in from body
		sel  canon.Selection
	}{
		{
			name: "defaults", args: []string{"--path", "/payments"}, body: payment,
			req: canon.Request{Method: "POST", Target: "/payments", ContentType: "application/json"},
		},
		{
			name: "method and target", args: []string{"--method", "patch", "--path", "/payments/../p/%7euser?z=1&a=2#frag"}, body: payment,
			req: canon.Request{Method: "PATCH", Target: "/payments/../p/%7euser?z=1&a=2#frag", ContentType: "application/json"},
		},
		{
			name: "include and exclude", args: []string{"--path", "/payments", "--include", "amount", "--include", "items.1", "--include", "metadata", "--exclude", "metadata.trace_id"}, body: payment,
			req: canon.Request{Method: "POST", Target: "/payments", ContentType: "application/json"},
			sel: canon.Selection{Include: []string{"amount", "items.1", "metadata"}, Exclude: []string{"metadata.trace_id"}},
		},
		{
			name: "headers", args: []string{"--path", "/payments", "--header", "X-Tenant: t1", "--header", "Accept-Language:  en ", "--header", "accept-language:fr", "--header", "X-Absent", "--header", "X-Empty:"}, body: payment,
			req: canon.Request{Method: "POST", Target: "/payments", ContentType: "application/json", Headers: [][2]string{
				{"X-Tenant", "t1"}, {"Accept-Language", "  en "}, {"accept-language", "fr"}, {"X-Empty", ""},
			}},
			sel: canon.Selection{Headers: []string{"X-Tenant", "Accept-Language", "accept-language", "X-Absent", "X-Empty"}},
		},
		{
			name: "pseudo-header", args: []string{"--path", "/p", "--header", ":authority: api.example.com"}, body: payment,
			req: canon.Request{Method: "POST", Target: "/p", ContentType: "application/json", Headers: [][2]string{{":authority", "api.example.com"}}},
			sel: canon.Selection{Headers: []string{":authority"}},
		},
		{
			name: "host", args: []string{"--host", "API.example.com:443", "--path", "/p"}, body: payment,
			req: canon.Request{Method: "POST", Host: "api.example.com", Target: "/p", ContentType: "application/json"},
		},
		{
			name: "raw body", args: []string{"--path", "/upload", "--content-type", "text/plain"}, body: []byte("{not json"),
			req: canon.Request{Method: "POST", Target: "/upload", ContentType: "text/plain"},
		},
		{
			name: "json suffix type", args: []string{"--path", "/p", "--content-type", "application/merge-patch+json; charset=utf-8"}, body: payment,
			req: canon.Request{Method: "POST", Target: "/p", ContentType: "application/merge-patch+json; charset=utf-8"},
		},
		{
			name: "empty body", args: []string{"--method", "DELETE", "--path", "/payments/1"}, body: nil,
			req: canon.Request{Method: "DELETE", Target: "/payments/1", ContentType: "application/json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Body = tt.body
			want, err := canon.Fingerprint(tt.req, tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			got := invoke(t, string(tt.body), append([]string{"fingerprint"}, tt.args...)...)
			if got.code != 0 || got.stdout != want+"\n" {
				t.Errorf("idemctl = %d %q (stderr %q), want 0 %q", got.code, got.stdout, got.stderr, want+"\n")
			}
		})
	}
}

// TestFingerprintSensitivity checks which changes move the fingerprint.
func TestFingerprintSensitivity(t *testing.T) {
	fp := func(args ...string) string {
		t.Helper()
		got := invoke(t, "", append([]string{"fingerprint", "--path", "/payments"}, args...)...)
		if got.code != 0 {
			t.Fatalf("idemctl fingerprint %q: exit %d: %s", args, got.code, got.stderr)
		}
		return got.stdout
	}
	base := fp("testdata/payment.json")
	tests := []struct {
		name string
		args []string
		same bool
	}{
		{"re-serialized body", []string{"testdata/payment_reordered.json"}, true},
		{"other trace id", []string{"testdata/payment_retraced.json"}, false},
		{"body as raw bytes", []string{"--content-type", "application/octet-stream", "testdata/payment.json"}, false},
		{"lower-case method", []string{"--method", "post", "testdata/payment.json"}, true},
		{"equivalent target", []string{"--path", "/x/../payments?", "testdata/payment.json"}, true},
		{"other method", []string{"--method", "PUT", "testdata/payment.json"}, false},
		{"header selected", []string{"--header", "X-Tenant: t1", "testdata/payment.json"}, false},
		{"include a field", []string{"--include", "amount", "testdata/payment.json"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fp(tt.args...); (got == base) != tt.same {
				t.Errorf("fingerprint %q vs base %q: same = %v, want %v", got, base, got == base, tt.same)
			}
		})
	}

	t.Run("exclude hides a field", func(t *testing.T) {
		a := fp("--exclude", "metadata.trace_id", "testdata/payment.json")
		b := fp("--exclude", "metadata.trace_id", "testdata/payment_retraced.json")
		if a != b {
			t.Errorf("excluded trace_id still counts: %q vs %q", a, b)
		}
	})
	t.Run("include keeps only its fields", func(t *testing.T) {
		a := fp("--include", "amount", "--include", "currency", "testdata/payment.json")
		b := fp("--include", "amount", "--include", "currency", "testdata/payment_retraced.json")
		if a != b {
			t.Errorf("field outside --include counts: %q vs %q", a, b)
		}
	})
	t.Run("header values", func(t *testing.T) {
		t1 := fp("--header", "X-Tenant: t1", "testdata/payment.json")
		fps := map[string]string{
			"same value, other case and spacing": fp("--header", "x-tenant:   t1  ", "testdata/payment.json"),
			"other value":                        fp("--header", "X-Tenant: t2", "testdata/payment.json"),
			"empty value":                        fp("--header", "X-Tenant:", "testdata/payment.json"),
			"absent":                             fp("--header", "X-Tenant", "testdata/payment.json"),
		}
		if fps["same value, other case and spacing"] != t1 {
			t.Error("header name case or value spacing changed the fingerprint")
		}
		seen := map[string]string{t1: "t1"}
		for _, name := range []string{"other value", "empty value", "absent"} {
			if prev, dup := seen[fps[name]]; dup {
				t.Errorf("%s fingerprints like %s", name, prev)
			}
			seen[fps[name]] = name
		}
	})
}

func TestHelp(t *testing.T) {
	var topics [][]string
	for _, c := range commands {
		name := strings.Fields(c.name) // "keys get" is typed as two words
		topics = append(topics, append([]string{"help"}, name...), append(name, "--help"), append(slices.Clone(name), "-h"))
	}
	for _, args := range append([][]string{{"--help"}, {"-h"}, {"help"}, {"help", "help"}}, topics...) {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			got := invoke(t, "", args...)
			if got.code != 0 || got.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and empty", got.code, got.stderr)
			}
			for _, want := range []string{"EXIT STATUS", "JSON OUTPUT", `"ok":false`, "64 MiB", "EXAMPLE"} {
				if !strings.Contains(got.stdout, want) {
					t.Errorf("help lacks %q", want)
				}
			}
		})
	}

	full := invoke(t, "", "--help").stdout
	for _, c := range commands {
		if !strings.Contains(full, "idemctl "+c.name+" [FLAGS]") || !strings.Contains(full, "$ idemctl "+c.name) {
			t.Errorf("--help lacks the synopsis or example of %s", c.name)
		}
		fs, _, _ := c.flagSet()
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(full, "--"+f.Name) {
				t.Errorf("--help lacks %s's flag --%s", c.name, f.Name)
			}
		})
	}
	for _, code := range []string{"invalid_json", "duplicate_name", "invalid_utf8", "lone_surrogate", "not_finite", "number_range", "too_deep", "too_large", "usage", "io", "internal"} {
		if !strings.Contains(full, code) {
			t.Errorf("--help lacks error code %q", code)
		}
	}
	for _, def := range []string{`(default "POST")`, `(default "application/json")`} {
		if !strings.Contains(full, def) {
			t.Errorf("--help lacks %s", def)
		}
	}
}

// endless is an input that never ends; it counts what was read from it.
type endless struct{ n int64 }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestInputLimit(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		in := new(endless)
		args := []string{"canon"}
		if asJSON {
			args = append(args, "--json")
		}
		got := invokeReader(t, in, args...)
		if got.code != 2 {
			t.Errorf("exit status = %d, want 2", got.code)
		}
		if in.n > maxInput+1<<20 {
			t.Errorf("read %d bytes, want about %d", in.n, maxInput)
		}
		if asJSON {
			checkError(t, decodeOne(t, got.stdout), "too_large", nil)
		} else if !strings.Contains(got.stderr, "stdin: input exceeds the 64 MiB limit") {
			t.Errorf("stderr = %q", got.stderr)
		}
	}
}

func TestCutHeader(t *testing.T) {
	tests := []struct {
		in, name, value string
		ok              bool
	}{
		{"X-Tenant: t1", "X-Tenant", " t1", true},
		{"X-Tenant:t1", "X-Tenant", "t1", true},
		{"X-Tenant:", "X-Tenant", "", true},
		{"X-Tenant", "X-Tenant", "", false},
		{"Referer: https://a/b", "Referer", " https://a/b", true},
		{":authority: api.example.com", ":authority", " api.example.com", true},
		{":authority", ":authority", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		name, value, ok := cutHeader(tt.in)
		if name != tt.name || value != tt.value || ok != tt.ok {
			t.Errorf("cutHeader(%q) = %q, %q, %v; want %q, %q, %v", tt.in, name, value, ok, tt.name, tt.value, tt.ok)
		}
	}
}

// TestLookup shows how a command group such as "keys get" dispatches.
func TestLookup(t *testing.T) {
	keys := &command{name: "keys"}
	keysGet := &command{name: "keys get"}
	table := []*command{canonCommand, keys, keysGet}
	tests := []struct {
		args     []string
		want     *command
		wantRest []string
	}{
		{[]string{"canon", "f.json"}, canonCommand, []string{"f.json"}},
		{[]string{"keys", "get", "k1"}, keysGet, []string{"k1"}},
		{[]string{"keys", "--json"}, keys, []string{"--json"}},
		{[]string{"key"}, nil, nil},
	}
	for _, tt := range tests {
		got, rest := lookup(table, tt.args)
		if got != tt.want || strings.Join(rest, " ") != strings.Join(tt.wantRest, " ") {
			t.Errorf("lookup(%q) = %v, %q; want %v, %q", tt.args, got, rest, tt.want, tt.wantRest)
		}
	}
}

// TestBinary builds idemctl and runs it as a shell would, proving main's
// wiring of arguments, stdin, stdout and the exit status.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	// go test puts its own toolchain's bin first on PATH (Go ≥ 1.19).
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "idemctl")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "canon")
	cmd.Stdin = strings.NewReader(`{"b":1,"a":2}` + "\n")
	out, err := cmd.Output()
	if err != nil || string(out) != `{"a":2,"b":1}`+"\n" {
		t.Errorf("idemctl canon = %q, %v; want %q", out, err, `{"a":2,"b":1}`+"\n")
	}

	cmd = exec.Command(bin, "canon", "testdata/duplicate.json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 {
		t.Errorf("idemctl canon duplicate.json: %v, want exit status 2", err)
	}
	if !strings.Contains(stderr.String(), "byte offset 7") {
		t.Errorf("stderr = %q, want the byte offset", stderr.String())
	}
}
