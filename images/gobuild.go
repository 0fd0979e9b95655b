package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildControlPlane cross-compiles the control plane (./controlplane of
// the module in moduleDir) for linux/goarch, as controlplane/Dockerfile
// does: static (CGO_ENABLED=0), -trimpath, stripped, no VCS stamp (the
// version and revision come from -X instead, so a dirty work tree does
// not change the bytes). It returns the binary.
func BuildControlPlane(ctx context.Context, moduleDir, goarch, dir string, m Meta) ([]byte, error) {
	out := filepath.Join(dir, "controlplane-linux-"+goarch)
	ldflags := fmt.Sprintf("-s -w -X main.version=%s -X main.revision=%s", m.Version, m.Revision)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags, "-o", out, "./controlplane")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build ./controlplane for linux/%s: %w\n%s", goarch, err, stderr.Bytes())
	}
	return os.ReadFile(out)
}
