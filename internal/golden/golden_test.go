package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Fatal(...any)          { r.failed = true }

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "values.golden")
	if err := os.WriteFile(path, []byte("a\t1\nb c\tx y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		lines []string
		fail  bool
	}{
		{"same", []string{"b c\tx y", "a\t1"}, false},
		{"changed value", []string{"a\t2", "b c\tx y"}, true},
		{"missing name", []string{"a\t1", "b c\tx y", "d\t4"}, true},
		{"fewer values", []string{"a\t1"}, true},
	}
	for _, tt := range tests {
		r := &recorder{TB: t}
		Check(r, path, tt.lines)
		if r.failed != tt.fail {
			t.Errorf("%s: failed = %v, want %v", tt.name, r.failed, tt.fail)
		}
	}
	r := &recorder{TB: t}
	Check(r, filepath.Join(t.TempDir(), "absent.golden"), []string{"a\t1"})
	if !r.failed {
		t.Error("a missing golden file passed")
	}
}
