package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"

	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The tarballs `make image` wrote (make test builds them first, as it
// builds the module the filter tests load).
var (
	builtWasm  = filepath.Join("..", "build", "idempotency.wasm")
	builtImage = filepath.Join("..", "build", "images")
)

// loopbackRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1 and returns its host:port.
func loopbackRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

// TestRegistryRoundTrip pushes make image's tarballs to a registry the way
// make image-push does, pulls them back the way Istio, Envoy Gateway and
// a container runtime do, and checks what arrives: plugin.wasm byte for
// byte the module make wasm built, and a control plane that runs.
func TestRegistryRoundTrip(t *testing.T) {
	module, err := os.ReadFile(builtWasm)
	if err != nil {
		t.Fatalf("%v: run make wasm image first", err)
	}
	for _, f := range []string{WasmTar, ControlPlaneTar} {
		if _, err := os.Stat(filepath.Join(builtImage, f)); err != nil {
			t.Fatalf("%v: run make image first", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg := loopbackRegistry(t)
	pushed, err := PushDir(ctx, reg+"/idemgate", "roundtrip", builtImage)
	if err != nil {
		t.Fatal(err)
	}

	// The module image, pulled by tag as the fetchers pull it.
	ref, err := name.ParseReference(reg + "/idemgate/" + WasmRepo + ":roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != pushed.Wasm.DigestStr() {
		t.Errorf("registry has %s for the tag, push said %s", desc.Digest, pushed.Wasm.DigestStr())
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	got := wasmFromImage(t, img)
	if !bytes.Equal(got, module) {
		t.Fatalf("plugin.wasm pulled (%d bytes) differs from %s (%d bytes): run make image after make wasm", len(got), builtWasm, len(module))
	}
	sum := sha256.Sum256(got)
	t.Logf("plugin.wasm sha256 %s; image %s", hex.EncodeToString(sum[:]), desc.Digest)

	// The control plane: an index of both platforms; the host's image
	// pulled the way a runtime picks it.
	cpRef, err := name.ParseReference(reg + "/idemgate/" + ControlPlaneRepo + ":roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(cpRef, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d.String() != pushed.ControlPlane.DigestStr() {
		t.Errorf("registry index %s, push said %s", d, pushed.ControlPlane.DigestStr())
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(Platforms) {
		t.Fatalf("index has %d images, want %d", len(im.Manifests), len(Platforms))
	}
	host := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	hostImg, err := remote.Image(cpRef, remote.WithContext(ctx), remote.WithPlatform(host))
	if err != nil {
		t.Fatalf("no %v image: %v", host, err)
	}
	cfg, err := hostImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != runtime.GOARCH || cfg.Config.User != User || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != BinaryPath {
		t.Errorf("pulled config: %s user %q entrypoint %v", cfg.Architecture, cfg.Config.User, cfg.Config.Entrypoint)
	}
	bin := fileFromImage(t, hostImg, BinaryPath[1:])
	if runtime.GOOS != "linux" {
		t.Fatalf("the control plane is a Linux binary; this test runs on Linux hosts (%s here)", runtime.GOOS)
	}
	exe := filepath.Join(t.TempDir(), "controlplane")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, exe, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("pulled controlplane --version: %v\n%s", err, out)
	}
	labels := cfg.Config.Labels
	want := "controlplane " + labels["org.opencontainers.image.version"] + " (revision " + labels["org.opencontainers.image.revision"] + ","
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("pulled controlplane --version = %q, want it to start %q (the labels)", out, want)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// TestMakeImageReproducible builds the control-plane index again from this
// source with the version, revision and time make image stamped (read
// from its labels): the digest must be the one make image printed.
func TestMakeImageReproducible(t *testing.T) {
	built, err := ReadIndexTar(filepath.Join(builtImage, ControlPlaneTar), t.TempDir())
	if err != nil {
		t.Fatalf("%v: run make image first", err)
	}
	im, err := built.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	first, err := built.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := first.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Config.Labels
	m := Meta{Version: l["org.opencontainers.image.version"], Revision: l["org.opencontainers.image.revision"],
		Source: l["org.opencontainers.image.source"], Created: cfg.Created.Time.UTC()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	again, err := BuildIndex(ctx, "..", t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := built.Digest()
	if got, _ := again.Digest(); got != want {
		t.Errorf("rebuilt index %s, make image built %s: the build is not reproducible, or the source changed since make image", got, want)
	}
}

// fileFromImage reads one file from the image's flattened file system.
func fileFromImage(t *testing.T, img v1.Image, path string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the image", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == path {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}
