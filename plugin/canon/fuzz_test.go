package canon

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gowebpki/jcs"
	"github.com/tidwall/gjson"
)

// addVectors seeds a fuzz target with the RFC 8785 reference inputs too.
func addVectors(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join(jcsDir, "input", "*.json"))
	if len(inputs) == 0 {
		f.Fatalf("no RFC 8785 vectors under %s", jcsDir)
	}
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDifferential compares Append with github.com/gowebpki/jcs, an
// independent RFC 8785 implementation, on every input either accepts: byte
// for byte when every number survives the trip through a double. Where our
// deviation wrote a number exactly (doc.go, "Exact numbers"), jcs must give
// our output the same canonical form as the input: the exact digits name
// the very double RFC 8785 prints. The seed corpus is in
// testdata/fuzz/FuzzDifferential and runs in `go test`.
func FuzzDifferential(f *testing.F) {
	addVectors(f)
	f.Add([]byte(`{"id":1234567890123456789,"x":[1e-400,0.1]}`))
	// Member names with control characters: escaped like values (RFC 8785).
	f.Add([]byte(`{"\u001f":1,"a\u0000b":{"\u001F\t":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := jcs.Transform(data)
		var rep Report
		got, gerr := AppendReport(nil, data, &rep)
		switch {
		case werr == nil && gerr == nil && len(rep.Exact) == 0:
			if !bytes.Equal(got, want) {
				t.Fatalf("input %q\n got %q\nwant %q (gowebpki/jcs)", data, got, want)
			}
		case werr == nil && gerr == nil:
			again, err := jcs.Transform(got)
			if err != nil || !bytes.Equal(again, want) {
				t.Fatalf("input %q\n got %q (exact numbers at %v)\ngowebpki/jcs of it %q, %v\nof the input %q", data, got, rep.Exact, again, err, want)
			}
		case werr == nil && !errors.Is(gerr, ErrTooDeep):
			// Our nesting bound is lower than the oracle's by design.
			t.Fatalf("input %q: refused (%v), gowebpki/jcs gives %q", data, gerr, want)
		case werr != nil && gerr == nil:
			t.Fatalf("input %q: accepted as %q, gowebpki/jcs refuses: %v", data, got, werr)
		}
	})
}

// FuzzAppend feeds arbitrary bytes: Append must not panic; what it accepts
// must come out valid and canonical (a fixed point); what it refuses must
// carry an offset inside the input.
func FuzzAppend(f *testing.F) {
	addVectors(f)
	f.Add([]byte(`{"a":[1,2,{"b":null}],"c":"\u00e9"}`))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Append([]byte("prefix"), data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > len(data) {
				t.Fatalf("input %q: error %v has no offset inside the input", data, err)
			}
			if string(out) != "prefix" {
				t.Fatalf("dst changed on error: %q", out)
			}
			return
		}
		out = out[len("prefix"):]
		if !gjson.ValidBytes(out) {
			t.Fatalf("input %q: output %q is not JSON", data, out)
		}
		again, err := Append(nil, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("input %q: output %q is not a fixed point (%q, %v)", data, out, again, err)
		}
	})
}

// FuzzWalkGrammar checks that the walk's grammar checks and gjson's
// validator agree (see checkWalkGrammar); the grammar cases seed it.
func FuzzWalkGrammar(f *testing.F) {
	addVectors(f)
	for _, in := range grammarCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkWalkGrammar(t, data)
	})
}
