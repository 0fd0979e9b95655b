package host

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// TestModuleCompiledOnce: the second Host of the same module does not
// compile it again, and closing a Host leaves the others working.
//
// The cache under test also writes what it compiles to a directory
// (wazero.NewCompilationCacheWithDir): wazero adds a file there each time
// it compiles a module, and only then (a module found in memory is
// neither read from nor written to the directory). So a file is a
// compilation: one appears for the first Host; once it is removed, none
// reappears for the later ones.
func TestModuleCompiledOnce(t *testing.T) {
	dir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close(context.Background()) }) // after the Hosts' cleanups
	modules := newModuleCache(cache)
	cp, up := startControlPlane(t), newTestUpstream(t)
	start := func(workers int) (*Host, string) {
		t.Helper()
		return newHostOn(t, cp, up, Config{Workers: workers}, modules)
	}

	first, _ := start(1)
	compiled := compiledFiles(t, dir)
	if len(compiled) != 1 {
		t.Fatalf("after the first New, the cache's directory holds %d compiled modules, want 1: %v", len(compiled), compiled)
	}
	for _, f := range compiled {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}

	_, secondURL := start(2)
	first.Close()
	_, thirdURL := start(1)
	if again := compiledFiles(t, dir); len(again) != 0 {
		t.Fatalf("the module was compiled again for a later Host: %v", again)
	}
	for i, url := range []string{secondURL, thirdURL} {
		key := []string{`"once-2"`, `"once-3"`}[i]
		if r := post(t, url+"/payments", key, `{"amount":1}`); r.status != 201 {
			t.Fatalf("Host %d after the first closed: POST = %d %s, want 201", i+2, r.status, r.body)
		}
	}
}

// compiledFiles lists the files under dir: wazero's compiled modules.
func compiledFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
