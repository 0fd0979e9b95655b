package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// File names under the output directory.
const (
	WasmTar         = "idempotency-wasm.tar"
	ControlPlaneTar = "controlplane.tar"
)

// Options of Build.
type Options struct {
	Wasm      string // the module file
	Out       string // output directory
	ModuleDir string // the Go module whose ./controlplane is built
	Tag       string
	Meta      Meta  // Created is set from Created by Validate
	Created   int64 // Unix seconds
	LoadArch  string
}

var stamp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// Validate checks the options and fills defaults.
func (o *Options) Validate() error {
	if _, err := name.NewTag("x:" + o.Tag); err != nil || o.Tag == "" {
		return fmt.Errorf("-tag %q: not a valid image tag", o.Tag)
	}
	// They go into -ldflags -X and into labels: one plain word each.
	for flag, v := range map[string]string{"-version": o.Meta.Version, "-revision": o.Meta.Revision} {
		if !stamp.MatchString(v) {
			return fmt.Errorf("%s %q: want letters, digits and . _ + - (at most 128)", flag, v)
		}
	}
	if o.Created < 0 {
		return fmt.Errorf("-created %d: want Unix seconds, 0 or more", o.Created)
	}
	o.Meta.Created = time.Unix(o.Created, 0).UTC()
	if o.LoadArch == "" {
		o.LoadArch = runtime.GOARCH
		if !hasArch(o.LoadArch) {
			o.LoadArch = Platforms[0].Architecture
		}
	}
	if !hasArch(o.LoadArch) {
		return fmt.Errorf("-load-arch %q: want one of the index's architectures", o.LoadArch)
	}
	return nil
}

func hasArch(a string) bool {
	for _, p := range Platforms {
		if p.Architecture == a {
			return true
		}
	}
	return false
}

// Result is what Build wrote, for pinning.
type Result struct {
	WasmTar, ControlPlaneTar string
	WasmRef, ControlPlaneRef name.Tag
	ModuleSHA256             string  // of plugin.wasm: Envoy's local or remote source sha256
	WasmDigest               v1.Hash // the module image's manifest
	IndexDigest              v1.Hash // the control plane's index
	Platforms                []PlatformDigest
}

// PlatformDigest is one image of the index.
type PlatformDigest struct {
	Platform string
	Digest   v1.Hash
}

func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)\n", r.WasmTar, r.WasmRef)
	fmt.Fprintf(&b, "  plugin.wasm sha256: %s\n", r.ModuleSHA256)
	fmt.Fprintf(&b, "  image digest:       %s   (WasmPlugin/TrafficExtension sha256, EnvoyExtensionPolicy image.sha256: %s)\n", r.WasmDigest, r.WasmDigest.Hex)
	fmt.Fprintf(&b, "%s (%s)\n", r.ControlPlaneTar, r.ControlPlaneRef)
	fmt.Fprintf(&b, "  index digest:       %s\n", r.IndexDigest)
	for _, p := range r.Platforms {
		fmt.Fprintf(&b, "  %-19s %s\n", p.Platform+":", p.Digest)
	}
	return b.String()
}

// Build builds both images and writes their tarballs under o.Out. o must
// have passed Validate.
func Build(ctx context.Context, o Options) (Result, error) {
	var r Result
	module, err := os.ReadFile(o.Wasm)
	if err != nil {
		return r, fmt.Errorf("the module (make wasm builds it): %w", err)
	}
	if r.WasmRef, err = name.NewTag(WasmRepo + ":" + o.Tag); err != nil {
		return r, err
	}
	if r.ControlPlaneRef, err = name.NewTag(ControlPlaneRepo + ":" + o.Tag); err != nil {
		return r, err
	}
	sum := sha256.Sum256(module)
	r.ModuleSHA256 = hex.EncodeToString(sum[:])
	wasm, err := WasmImage(module, o.Meta)
	if err != nil {
		return r, fmt.Errorf("%s: %w", o.Wasm, err)
	}
	if r.WasmDigest, err = wasm.Digest(); err != nil {
		return r, err
	}

	tmp, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	idx, err := BuildIndex(ctx, o.ModuleDir, tmp, o.Meta)
	if err != nil {
		return r, err
	}
	if r.IndexDigest, err = idx.Digest(); err != nil {
		return r, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return r, err
	}
	for _, d := range im.Manifests {
		r.Platforms = append(r.Platforms, PlatformDigest{Platform: d.Platform.String(), Digest: d.Digest})
	}

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return r, err
	}
	r.WasmTar = filepath.Join(o.Out, WasmTar)
	if err := WriteWasmTar(r.WasmTar, r.WasmRef, wasm); err != nil {
		return r, err
	}
	var buf bytes.Buffer
	if err := WriteIndexTar(&buf, r.ControlPlaneRef, idx, o.LoadArch); err != nil {
		return r, err
	}
	r.ControlPlaneTar = filepath.Join(o.Out, ControlPlaneTar)
	if err := os.WriteFile(r.ControlPlaneTar, buf.Bytes(), 0o644); err != nil {
		return r, err
	}
	return r, nil
}

// BuildIndex compiles the control plane for every platform (binaries in
// dir) and assembles the index.
func BuildIndex(ctx context.Context, moduleDir, dir string, m Meta) (v1.ImageIndex, error) {
	ca, err := CABundle()
	if err != nil {
		return nil, err
	}
	bins := map[string][]byte{}
	for _, p := range Platforms {
		b, err := BuildControlPlane(ctx, moduleDir, p.Architecture, dir, m)
		if err != nil {
			return nil, err
		}
		bins[p.Architecture] = b
	}
	return ControlPlaneIndex(bins, ca, m)
}

// PushDir pushes the tarballs in dir (see Push).
func PushDir(ctx context.Context, registry, tag, dir string, opts ...remote.Option) (Pushed, error) {
	scratch, err := os.MkdirTemp("", "mkimage-push-")
	if err != nil {
		return Pushed{}, err
	}
	defer os.RemoveAll(scratch)
	registry = strings.TrimSuffix(registry, "/")
	return Push(ctx, registry, tag, filepath.Join(dir, WasmTar), filepath.Join(dir, ControlPlaneTar), scratch, opts...)
}
