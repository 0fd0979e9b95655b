package images

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Names of the two images: the tarballs' tags and, under a registry,
// the repositories they are pushed to.
const (
	WasmRepo         = "idemgate-wasm"
	ControlPlaneRepo = "idemgate-controlplane"
)

// Pushed says what a push wrote: each image's reference by digest.
type Pushed struct {
	Wasm, ControlPlane name.Digest
}

// Push pushes the two tarballs `make image` wrote (wasmTar, indexTar) to
// registry/idemgate-wasm:tag and registry/idemgate-controlplane:tag, as
// `crane push` would: the module image as read from its Docker tarball,
// the control plane as the index in its OCI layout. The digests are the
// ones `make image` printed. opts carry auth and transport (the command
// passes authn.DefaultKeychain: the usual Docker config).
func Push(ctx context.Context, registry, tag, wasmTar, indexTar, scratch string, opts ...remote.Option) (Pushed, error) {
	var out Pushed
	wasmRef, err := name.NewTag(registry + "/" + WasmRepo + ":" + tag)
	if err != nil {
		return out, fmt.Errorf("REGISTRY %q, tag %q: %w", registry, tag, err)
	}
	cpRef, err := name.NewTag(registry + "/" + ControlPlaneRepo + ":" + tag)
	if err != nil {
		return out, fmt.Errorf("REGISTRY %q, tag %q: %w", registry, tag, err)
	}
	img, err := ReadWasmTar(wasmTar)
	if err != nil {
		return out, err
	}
	idx, err := ReadIndexTar(indexTar, scratch)
	if err != nil {
		return out, err
	}
	opts = append(opts, remote.WithContext(ctx))
	if err := remote.Write(wasmRef, img, opts...); err != nil {
		return out, fmt.Errorf("pushing %s: %w", wasmRef, err)
	}
	if err := remote.WriteIndex(cpRef, idx, opts...); err != nil {
		return out, fmt.Errorf("pushing %s: %w", cpRef, err)
	}
	wd, err := img.Digest()
	if err != nil {
		return out, err
	}
	cd, err := idx.Digest()
	if err != nil {
		return out, err
	}
	out.Wasm = wasmRef.Context().Digest(wd.String())
	out.ControlPlane = cpRef.Context().Digest(cd.String())
	return out, nil
}

// ReadWasmTar reads the module image from its Docker tarball, checking
// every digest.
func ReadWasmTar(path string) (v1.Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := verifyImage(img); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}
