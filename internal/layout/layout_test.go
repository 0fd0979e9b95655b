// Package layout holds README's "Layout" section to the tree: every
// directory the repository tracks has its line there, and every line names
// a path that exists, so the map a newcomer reads first cannot go stale.
package layout

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// root is the repository root, relative to this package.
var root = filepath.Join("..", "..")

// layoutEntries returns the paths that begin the lines of the first code
// block after the "## Layout" heading: each line is a path (a directory
// ends in /), spaces, then what it holds.
func layoutEntries(readme []byte) ([]string, error) {
	_, after, ok := bytes.Cut(readme, []byte("\n## Layout\n"))
	if !ok {
		return nil, errors.New(`no "## Layout" section`)
	}
	_, block, ok := bytes.Cut(after, []byte("```\n"))
	if !ok {
		return nil, errors.New("the Layout section has no code block")
	}
	block, _, ok = bytes.Cut(block, []byte("```"))
	if !ok {
		return nil, errors.New("the Layout code block is not closed")
	}
	var entries []string
	for i, line := range strings.Split(strings.TrimRight(string(block), "\n"), "\n") {
		name, desc, ok := strings.Cut(line, "  ")
		if !ok || name == "" || strings.TrimSpace(desc) == "" {
			return nil, fmt.Errorf("layout line %d %q: want a path, spaces, then what it holds", i+1, line)
		}
		entries = append(entries, name)
	}
	return entries, nil
}

// covered returns the directories (slash-separated, without a trailing /)
// that entries name: a directory entry names itself, a file entry its
// directory.
func covered(entries []string) map[string]bool {
	dirs := map[string]bool{}
	for _, e := range entries {
		if d, ok := strings.CutSuffix(e, "/"); ok {
			dirs[d] = true
		} else {
			dirs[path.Dir(e)] = true
		}
	}
	return dirs
}

// trackedDirs returns every directory that holds a tracked file itself,
// except the root and anything inside a testdata directory. A directory
// holding only directories (internal/, e2e/cmd/) needs no line of its own.
func trackedDirs(files []string) []string {
	set := map[string]bool{}
	for _, f := range files {
		d := path.Dir(f)
		if d == "." || d == "testdata" || strings.HasPrefix(d, "testdata/") || strings.Contains(d, "/testdata") {
			continue
		}
		set[d] = true
	}
	dirs := make([]string, 0, len(set))
	for d := range set {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// missing lists the directories the layout does not name.
func missing(dirs []string, named map[string]bool) []string {
	var out []string
	for _, d := range dirs {
		if !named[d] {
			out = append(out, d)
		}
	}
	return out
}

func TestLayoutParsing(t *testing.T) {
	tests := []struct {
		name    string
		readme  string
		want    []string
		wantErr bool
	}{
		{
			name:   "paths before the spaces",
			readme: "# x\n\n## Layout\n\n```\nplugin/        the filter\n.ci/run        CI\n```\n\n## Next\n",
			want:   []string{"plugin/", ".ci/run"},
		},
		{name: "no section", readme: "# x\n## Other\n```\na/  b\n```\n", wantErr: true},
		{name: "no block", readme: "# x\n## Layout\ntext\n", wantErr: true},
		{name: "unclosed block", readme: "# x\n## Layout\n```\na/  b\n", wantErr: true},
		{name: "a line without a description", readme: "# x\n## Layout\n```\nplugin/\n```\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := layoutEntries([]byte(tc.readme))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("entries = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMissingDirectories(t *testing.T) {
	files := []string{"go.mod", "plugin/main.go", "plugin/canon/testdata/fuzz/x", "plugin/canon/doc.go",
		"e2e/cmd/demo/main.go", "e2e/cmd/load/main.go", "testdata/a/b", ".ci/run"}
	dirs := trackedDirs(files)
	if want := ".ci,e2e/cmd/demo,e2e/cmd/load,plugin,plugin/canon"; strings.Join(dirs, ",") != want {
		t.Fatalf("trackedDirs = %q, want %s", dirs, want)
	}
	named := covered([]string{"plugin/", "plugin/canon/", "e2e/", "e2e/cmd/demo/", ".ci/run"})
	if got := missing(dirs, named); strings.Join(got, ",") != "e2e/cmd/load" {
		t.Errorf("missing = %q, want [e2e/cmd/load]", got)
	}
}

// TestREADMELayoutMatchesTree checks the real README against the tracked
// tree: a new directory without its line, or a line left behind by a
// removed one, fails here.
func TestREADMELayoutMatchesTree(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := layoutEntries(readme)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(e)))
		switch {
		case err != nil:
			t.Errorf("README's Layout names %s, which does not exist: %v", e, err)
		case strings.HasSuffix(e, "/") != fi.IsDir():
			t.Errorf("README's Layout names %s: a directory ends in /, a file does not", e)
		}
	}
	cmd := exec.Command("git", "ls-files")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files (the test needs the repository's git checkout): %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 50 {
		t.Fatalf("git ls-files listed %d files, expected the whole repository", len(files))
	}
	for _, d := range missing(trackedDirs(files), covered(entries)) {
		t.Errorf("README's Layout has no line for %s/", d)
	}
}
