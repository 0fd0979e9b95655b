package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/idemgate/idemgate/images"
)

// stage is what a test needs of one Dockerfile stage.
type stage struct {
	from        string
	user        string
	entrypoint  []string // exec form only
	env, expose []string
	copies      [][]string // COPY's arguments, flags included
	labels      []string
}

// parseDockerfile reads a Dockerfile with BuildKit's own parser (the one
// `docker build` runs) and returns its stages. A parser warning (such as
// an empty continuation line) fails it too.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("%s: BuildKit warns: %s", path, w.Short)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		var args []string
		for a := n.Next; a != nil; a = a.Next {
			args = append(args, a.Value)
		}
		cmd := strings.ToLower(n.Value) // as written: FROM, from…
		if cmd == "from" {
			stages = append(stages, stage{from: strings.Join(args, " ")})
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		s := &stages[len(stages)-1]
		switch cmd {
		case "user":
			s.user = strings.Join(args, " ")
		case "entrypoint":
			if !n.Attributes["json"] {
				t.Errorf("%s:%d: ENTRYPOINT in shell form: the image has no shell; use the exec (JSON) form", path, n.StartLine)
			}
			s.entrypoint = args
		case "env":
			// Triples: name, value, separator ("=" or "" for the old form).
			for i := 0; i+1 < len(args); i += 3 {
				s.env = append(s.env, args[i]+"="+args[i+1])
			}
		case "expose":
			s.expose = append(s.expose, args...)
		case "copy":
			s.copies = append(s.copies, append(append([]string{}, n.Flags...), args...))
		case "label":
			for i := 0; i+1 < len(args); i += 3 {
				s.labels = append(s.labels, args[i])
			}
		}
	}
	return stages
}

// TestDockerfiles parses every Dockerfile in the repository and checks
// what the runtime images must do: run as 65532, start a binary in exec
// form that the final stage really copies in; and that the control
// plane's agrees with the image make image builds without Docker.
func TestDockerfiles(t *testing.T) {
	var files []string
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if !d.IsDir() && (d.Name() == "Dockerfile" || strings.HasPrefix(d.Name(), "Dockerfile.")) && !strings.HasSuffix(d.Name(), ".dockerignore") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %v; want controlplane/Dockerfile and e2e/Dockerfile.upstream at least", files)
	}
	for _, path := range files {
		t.Run(filepath.ToSlash(path), func(t *testing.T) {
			stages := parseDockerfile(t, path)
			if len(stages) == 0 {
				t.Fatal("no FROM")
			}
			final := stages[len(stages)-1]
			if final.user != "65532:65532" {
				t.Errorf("final stage USER %q, want 65532:65532 (non-root, as the Kubernetes manifests require)", final.user)
			}
			if len(final.entrypoint) != 1 {
				t.Fatalf("final stage ENTRYPOINT %q, want exactly the binary", final.entrypoint)
			}
			copied := false
			for _, c := range final.copies {
				if len(c) > 0 && c[len(c)-1] == final.entrypoint[0] {
					copied = true
				}
			}
			if !copied {
				t.Errorf("ENTRYPOINT %s is not a COPY destination of the final stage %v", final.entrypoint[0], final.copies)
			}
		})
	}

	cp := parseDockerfile(t, filepath.Join("..", "controlplane", "Dockerfile"))
	if len(cp) == 0 {
		t.Fatal("controlplane/Dockerfile: no FROM")
	}
	final := cp[len(cp)-1]
	if len(final.entrypoint) != 1 || final.entrypoint[0] != images.BinaryPath {
		t.Errorf("controlplane/Dockerfile ENTRYPOINT %q; make image's binary is %s", final.entrypoint, images.BinaryPath)
	}
	if final.user != images.User {
		t.Errorf("controlplane/Dockerfile USER %q; make image's is %s", final.user, images.User)
	}
	if len(final.env) != 1 || final.env[0] != images.ListenEnv {
		t.Errorf("controlplane/Dockerfile ENV %q; make image's is %s", final.env, images.ListenEnv)
	}
	if len(final.expose) != 1 || final.expose[0]+"/tcp" != images.Port {
		t.Errorf("controlplane/Dockerfile EXPOSE %q; make image's is %s", final.expose, images.Port)
	}
	for _, l := range []string{"org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision"} {
		if !contains(final.labels, l) {
			t.Errorf("controlplane/Dockerfile has no LABEL %s; make image's image has it", l)
		}
	}
}
