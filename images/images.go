// Package images builds idemgate's two OCI images with no container engine:
// the Wasm module image Istio and Envoy Gateway pull, and the control
// plane's multi-platform image. Everything an image holds comes from its
// inputs (bytes, a Meta): the same inputs give the same digests.
package images

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// What the images hold; controlplane/Dockerfile must agree (a test in e2e
// reads it with BuildKit's parser).
const (
	// WasmFile is the one file of the module image's one layer: the name
	// both fetchers look for.
	WasmFile = "plugin.wasm"
	// BinaryPath is the control plane's executable and entrypoint.
	BinaryPath = "/controlplane"
	// User is distroless's "nonroot".
	User = "65532:65532"
	// ListenEnv: inside a container the service listens on every
	// interface (the binary's own default is loopback only).
	ListenEnv = "IDEM_CONTROLPLANE_ADDR=0.0.0.0:8081"
	// Port is the exposed port.
	Port = "8081/tcp"
	// CAFile is where Go's crypto/x509 looks first on Linux.
	CAFile = "/etc/ssl/certs/ca-certificates.crt"
)

// Platforms the control-plane index holds.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Meta is what an image says about its build: OCI labels and the time
// stamped on its config, history and files. Created is fixed by the
// caller (make passes the last commit's time), never the clock.
type Meta struct {
	Version  string // org.opencontainers.image.version
	Revision string // org.opencontainers.image.revision: the commit
	Source   string // org.opencontainers.image.source: the repository URL
	Created  time.Time
}

func (m Meta) labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   m.Source,
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.created":  m.Created.UTC().Format(time.RFC3339),
	}
}

// Docker's schema 2 media types, not OCI's, for both images:
//   - Istio's and Envoy Gateway's fetchers (pkg/wasm and internal/wasm
//     imagefetcher.go) accept a single-layer image whose layer is a
//     gzipped tar holding plugin.wasm, with Docker's media types or with
//     OCI's (the "compat" variant); the "oci" variant's custom artifact
//     types are refused by `docker load` and by some registries.
//   - A Docker-style tarball (manifest.json) keeps no manifest: readers
//     such as `crane push` and go-containerregistry's tarball package
//     rebuild one with Docker's types. Built with those types, the image
//     read back has the very digest printed here, so a digest pinned from
//     `make image` is the digest `crane push` produces.
const (
	manifestType = types.DockerManifestSchema2
	configType   = types.DockerConfigJSON
	layerType    = types.DockerLayer
	indexType    = types.DockerManifestList
)

// WasmImage is the module image: FROM scratch, one layer holding
// plugin.wasm (what `COPY plugin.wasm ./` builds), no entrypoint. Its
// config names the module's own platform, wasip1/wasm: the fetchers read
// a plain manifest whatever its platform, and `docker load` checks the
// OS only on Windows.
func WasmImage(module []byte, m Meta) (v1.Image, error) {
	if len(module) < 8 || !bytes.Equal(module[:4], []byte("\x00asm")) {
		return nil, fmt.Errorf("the module is not WebAssembly (want the \\0asm magic, got %d bytes)", len(module))
	}
	layer, err := layerOf(m.Created, file{name: WasmFile, mode: 0o644, data: module})
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		OS:           "wasip1",
		Architecture: "wasm",
		Config:       v1.Config{Labels: m.labels()},
	}
	return assemble(cfg, m.Created, []mutate.Addendum{{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: m.Created}, CreatedBy: "COPY " + WasmFile + " ./ # images.WasmImage"},
		MediaType: layerType,
	}})
}

// ControlPlaneImage is the control plane for one platform, equivalent to
// controlplane/Dockerfile's distroless image: a base layer (CA
// certificates, passwd and group naming 65532 nonroot, /tmp) shared by
// every platform, then the static binary as /controlplane.
func ControlPlaneImage(binary []byte, p v1.Platform, caPEM []byte, m Meta) (v1.Image, error) {
	if len(binary) < 4 || !bytes.Equal(binary[:4], []byte("\x7fELF")) {
		return nil, fmt.Errorf("the %s/%s control plane is not an ELF executable", p.OS, p.Architecture)
	}
	base, err := layerOf(m.Created,
		file{name: "etc/", mode: 0o755, dir: true},
		file{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		file{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		file{name: "etc/ssl/", mode: 0o755, dir: true},
		file{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		file{name: CAFile[1:], mode: 0o644, data: caPEM},
		file{name: "home/", mode: 0o755, dir: true},
		file{name: "home/nonroot/", mode: 0o700, dir: true, uid: 65532},
		file{name: "tmp/", mode: 0o1777, dir: true},
	)
	if err != nil {
		return nil, err
	}
	bin, err := layerOf(m.Created, file{name: BinaryPath[1:], mode: 0o755, data: binary})
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		Config: v1.Config{
			User:         User,
			Env:          []string{ListenEnv},
			Entrypoint:   []string{BinaryPath},
			ExposedPorts: map[string]struct{}{Port: {}},
			WorkingDir:   "/",
			Labels:       m.labels(),
		},
	}
	at := v1.Time{Time: m.Created}
	return assemble(cfg, m.Created, []mutate.Addendum{
		{Layer: base, MediaType: layerType, History: v1.History{Created: at, CreatedBy: "base: CA certificates, nonroot user, /tmp # images.ControlPlaneImage"}},
		{Layer: bin, MediaType: layerType, History: v1.History{Created: at, CreatedBy: "COPY controlplane " + BinaryPath + " # images.ControlPlaneImage"}},
	})
}

// ControlPlaneIndex is the multi-platform control plane: one image per
// entry of Platforms, binaries keyed by architecture.
func ControlPlaneIndex(binaries map[string][]byte, caPEM []byte, m Meta) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, indexType)
	for _, p := range Platforms {
		bin, ok := binaries[p.Architecture]
		if !ok {
			return nil, fmt.Errorf("no control-plane binary for %s/%s", p.OS, p.Architecture)
		}
		img, err := ControlPlaneImage(bin, p, caPEM, m)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

// CABundle is the PEM of the Mozilla (NSS) roots Go's
// golang.org/x/crypto/x509roots/fallback carries: pinned by go.sum, so
// the same commit gives the same file on any machine, unlike the build
// machine's /etc/ssl. Roots NSS trusts only for certificates issued
// before a date (a constraint a PEM file cannot express) are left out.
func CABundle() ([]byte, error) {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, fmt.Errorf("encoding a root: %w", err)
		}
	}
	if buf.Len() == 0 {
		return nil, fmt.Errorf("the root bundle is empty")
	}
	return buf.Bytes(), nil
}

func assemble(cfg *v1.ConfigFile, created time.Time, adds []mutate.Addendum) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}
	// Append filled RootFS and History; keep them, set the rest.
	got, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.RootFS, cfg.History = got.RootFS, got.History
	cfg.Created = v1.Time{Time: created}
	return mutate.ConfigFile(img, cfg)
}

type file struct {
	name string
	mode int64
	dir  bool
	uid  int
	data []byte
}

// layerOf is a gzipped tar of files, byte-for-byte the same for the same
// files and time: fixed owner, modes and times, no user or host names.
func layerOf(t time.Time, files ...file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: t.UTC(), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(layerType))
}
