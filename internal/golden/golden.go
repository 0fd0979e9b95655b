// Package golden holds tests to values fixed in testdata: a file of
// "name<TAB>value" lines, computed once by the code of the day, for
// values that are stored or compared across versions (fingerprints,
// scopes, edge entries), so that none changes unnoticed.
//
// go test ... -args -update-golden rewrites the files from the current
// code: only for a deliberate, versioned change (a new framing tag).
package golden

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update-golden", false, "rewrite the golden files of the tests run from the current code")

// Check compares lines, each "name<TAB>value", with the file at path:
// every name must be there with that value, and the file hold no other.
func Check(t testing.TB, path string, lines []string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, v, ok := strings.Cut(s.Text(), "\t")
		if !ok {
			t.Fatalf("%s: line %q has no tab", path, s.Text())
		}
		want[name] = v
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(lines) {
		t.Errorf("%s has %d values, the test computes %d", path, len(want), len(lines))
	}
	for _, l := range lines {
		name, got, _ := strings.Cut(l, "\t")
		if w, ok := want[name]; !ok {
			t.Errorf("%s: not in %s", name, path)
		} else if got != w {
			t.Errorf("%s:\n got %s\nwant %s (%s)", name, got, w, path)
		}
	}
}
