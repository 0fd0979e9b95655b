package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testMeta = Meta{Version: "v1.2.3", Revision: "0123abc", Source: "https://example.test/idemgate", Created: time.Unix(1764547200, 0).UTC()}

// fakeModule and fakeBinary carry the magic numbers the builders check.
func fakeModule(s string) []byte { return append([]byte("\x00asm\x01\x00\x00\x00"), s...) }
func fakeBinary(s string) []byte { return append([]byte("\x7fELF"), s...) }

func fakeIndex(t *testing.T, m Meta) v1.ImageIndex {
	t.Helper()
	idx, err := ControlPlaneIndex(map[string][]byte{"amd64": fakeBinary("amd64"), "arm64": fakeBinary("arm64")}, []byte("ca"), m)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// layerFiles reads a gzipped tar layer into name -> (header, content).
func layerFiles(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name], data[h.Name] = h, b
	}
}

// wasmFromImage takes plugin.wasm out the way Istio's and Envoy Gateway's
// fetchers do for a Docker-typed image: a Docker schema 2 manifest, the
// last layer a gzipped tar of Docker's layer type, the first entry whose
// base name is plugin.wasm.
func wasmFromImage(t *testing.T, img v1.Image) []byte {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("manifest media type %q: the fetchers take Docker's path only for %q", m.MediaType, types.DockerManifestSchema2)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want exactly one", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.DockerLayer {
		t.Fatalf("layer media type %q, want %q", mt, types.DockerLayer)
	}
	_, files := layerFiles(t, layers[0])
	if len(files) != 1 {
		t.Errorf("layer holds %d files, want plugin.wasm only", len(files))
	}
	b, ok := files[WasmFile]
	if !ok {
		t.Fatalf("no %s in the layer", WasmFile)
	}
	return b
}

func TestWasmImage(t *testing.T) {
	module := fakeModule("module")
	img, err := WasmImage(module, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	if got := wasmFromImage(t, img); !bytes.Equal(got, module) {
		t.Errorf("plugin.wasm differs from the module")
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "wasip1" || cfg.Architecture != "wasm" || len(cfg.Config.Entrypoint) != 0 {
		t.Errorf("config platform %s/%s entrypoint %v; want wasip1/wasm and none", cfg.OS, cfg.Architecture, cfg.Config.Entrypoint)
	}
	checkLabels(t, cfg)
	if _, err := WasmImage([]byte("#!/bin/sh\n"), testMeta); err == nil {
		t.Error("WasmImage accepted a file that is not WebAssembly")
	}
}

func checkLabels(t *testing.T, cfg *v1.ConfigFile) {
	t.Helper()
	want := map[string]string{
		"org.opencontainers.image.source":   testMeta.Source,
		"org.opencontainers.image.revision": testMeta.Revision,
		"org.opencontainers.image.version":  testMeta.Version,
		"org.opencontainers.image.created":  "2025-12-01T00:00:00Z",
	}
	for k, v := range want {
		if cfg.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
		}
	}
	if !cfg.Created.Time.Equal(testMeta.Created) {
		t.Errorf("created %v, want %v", cfg.Created.Time, testMeta.Created)
	}
}

func TestControlPlaneImage(t *testing.T) {
	idx := fakeIndex(t, testMeta)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.DockerManifestList || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d entries, want a manifest list of 2", mt, len(im.Manifests))
	}
	var baseDigests []v1.Hash
	for i, d := range im.Manifests {
		want := Platforms[i]
		if d.Platform == nil || !d.Platform.Equals(want) {
			t.Fatalf("entry %d platform %v, want %v", i, d.Platform, want)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		if cfg.OS != want.OS || cfg.Architecture != want.Architecture || c.User != User ||
			len(c.Entrypoint) != 1 || c.Entrypoint[0] != BinaryPath || len(c.Env) != 1 || c.Env[0] != ListenEnv {
			t.Errorf("%v: config %s/%s user %q entrypoint %v env %v", want, cfg.OS, cfg.Architecture, c.User, c.Entrypoint, c.Env)
		}
		if _, ok := c.ExposedPorts[Port]; !ok || len(c.ExposedPorts) != 1 {
			t.Errorf("%v: exposed ports %v, want %s", want, c.ExposedPorts, Port)
		}
		checkLabels(t, cfg)
		layers, err := img.Layers()
		if err != nil || len(layers) != 2 {
			t.Fatalf("%v: %d layers (%v), want base and binary", want, len(layers), err)
		}
		d0, _ := layers[0].Digest()
		baseDigests = append(baseDigests, d0)
		hdrs, files := layerFiles(t, layers[0])
		if string(files[CAFile[1:]]) != "ca" || !strings.Contains(string(files["etc/passwd"]), ":65532:65532:") {
			t.Errorf("%v: base layer lacks the CA file or the nonroot user: %v", want, hdrs)
		}
		if h := hdrs["tmp/"]; h == nil || h.Mode != 0o1777 {
			t.Errorf("%v: /tmp missing or not 1777", want)
		}
		hdrs, files = layerFiles(t, layers[1])
		if h := hdrs[BinaryPath[1:]]; h == nil || h.Mode != 0o755 || string(files[BinaryPath[1:]]) != string(fakeBinary(want.Architecture)) {
			t.Errorf("%v: binary layer %v: want %s, mode 0755, this platform's binary", want, hdrs, BinaryPath)
		}
		for n, h := range hdrs {
			if !h.ModTime.Equal(testMeta.Created) {
				t.Errorf("%s mtime %v, want the build time %v", n, h.ModTime, testMeta.Created)
			}
		}
	}
	if baseDigests[0] != baseDigests[1] {
		t.Error("the base layer differs between platforms; it should be shared")
	}
	if _, err := ControlPlaneIndex(map[string][]byte{"amd64": fakeBinary("x")}, nil, testMeta); err == nil {
		t.Error("an index with a platform missing was built")
	}
	if _, err := ControlPlaneImage([]byte("MZ"), Platforms[0], nil, testMeta); err == nil {
		t.Error("a non-ELF binary was accepted")
	}
}

// The same inputs give the same digests and tar bytes; the time is the
// Meta's, not the clock's.
func TestReproducible(t *testing.T) {
	digest := func(f func() (v1.Hash, error)) v1.Hash {
		t.Helper()
		h, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	w1, _ := WasmImage(fakeModule("m"), testMeta)
	time.Sleep(1100 * time.Millisecond) // a clock-stamped build would differ now
	w2, _ := WasmImage(fakeModule("m"), testMeta)
	if digest(w1.Digest) != digest(w2.Digest) {
		t.Error("two builds of the module image differ")
	}
	i1, i2 := fakeIndex(t, testMeta), fakeIndex(t, testMeta)
	if digest(i1.Digest) != digest(i2.Digest) {
		t.Error("two builds of the index differ")
	}
	var b1, b2 bytes.Buffer
	tag := name.MustParseReference(ControlPlaneRepo + ":t").(name.Tag)
	if err := WriteIndexTar(&b1, tag, i1, "amd64"); err != nil {
		t.Fatal(err)
	}
	if err := WriteIndexTar(&b2, tag, i2, "amd64"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Error("two writes of the index tar differ")
	}
	later := testMeta
	later.Created = later.Created.Add(time.Second)
	if digest(fakeIndex(t, later).Digest) == digest(i1.Digest) {
		t.Error("the build time does not reach the digest")
	}
}

// What `crane push` and `docker load` read back from the tarballs is the
// image built, digests included.
func TestTarballsReadBack(t *testing.T) {
	dir := t.TempDir()
	wasm, _ := WasmImage(fakeModule("m"), testMeta)
	wasmPath := filepath.Join(dir, WasmTar)
	if err := WriteWasmTar(wasmPath, name.MustParseReference(WasmRepo+":t").(name.Tag), wasm); err != nil {
		t.Fatal(err)
	}
	back, err := ReadWasmTar(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := wasm.Digest()
	if bd, _ := back.Digest(); bd != wd {
		t.Errorf("module image read back from its tarball has digest %s, built %s", bd, wd)
	}

	idx := fakeIndex(t, testMeta)
	var buf bytes.Buffer
	tag := name.MustParseReference(ControlPlaneRepo + ":t").(name.Tag)
	if err := WriteIndexTar(&buf, tag, idx, "arm64"); err != nil {
		t.Fatal(err)
	}
	cpPath := filepath.Join(dir, ControlPlaneTar)
	if err := os.WriteFile(cpPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIndexTar(cpPath, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := idx.Digest()
	if gd, _ := got.Digest(); gd != id {
		t.Errorf("index read back from the OCI layout has digest %s, built %s", gd, id)
	}
	// The Docker manifest.json, as docker load reads it: per-platform
	// tags, and the plain tag on the -load-arch image.
	im, _ := idx.IndexManifest()
	for _, c := range []struct {
		tag  string
		want v1.Hash
	}{
		{ControlPlaneRepo + ":t-linux-amd64", im.Manifests[0].Digest},
		{ControlPlaneRepo + ":t-linux-arm64", im.Manifests[1].Digest},
		{ControlPlaneRepo + ":t", im.Manifests[1].Digest},
	} {
		tg, err := name.NewTag(c.tag)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(cpPath, &tg)
		if err != nil {
			t.Errorf("manifest.json: %s: %v", c.tag, err)
			continue
		}
		if d, _ := img.Digest(); d != c.want {
			t.Errorf("manifest.json: %s is %s, want %s", c.tag, d, c.want)
		}
	}
	if err := WriteIndexTar(io.Discard, tag, idx, "s390x"); err == nil {
		t.Error("a -load-arch the index does not hold was accepted")
	}
}

// A tar that is not what WriteIndexTar writes is refused with an error.
func TestReadIndexTarRefuses(t *testing.T) {
	var good bytes.Buffer
	if err := WriteIndexTar(&good, name.MustParseReference("x:t").(name.Tag), fakeIndex(t, testMeta), "amd64"); err != nil {
		t.Fatal(err)
	}
	mk := func(entries ...*tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	corrupt := bytes.Clone(good.Bytes())
	// Flip a byte of the last layer blob's content (far from headers).
	corrupt[len(corrupt)-4096] ^= 0xff
	tests := map[string][]byte{
		"path out of the directory": mk(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}),
		"symlink":                   mk(&tar.Header{Name: "index.json", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}),
		"no layout":                 mk(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644}),
		"not a tar":                 []byte("plain text, not a tar at all, long enough to be read as a header..."),
		"corrupted blob":            corrupt,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.tar")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadIndexTar(p, t.TempDir()); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestCABundle(t *testing.T) {
	b, err := CABundle()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := b; ; n++ {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
	}
	// NSS has ~150 roots; a broken reader would give none or a handful.
	if n < 100 {
		t.Errorf("%d roots, want the NSS bundle (over 100)", n)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Error("crypto/x509 reads no certificate from the bundle")
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Tag: "dev", Meta: Meta{Version: "v1.0.0-3-gabc-dirty", Revision: "0123abc"}, Created: 1764547200}
	tests := []struct {
		name string
		edit func(o *Options)
		ok   bool
	}{
		{"valid", func(*Options) {}, true},
		{"empty version", func(o *Options) { o.Meta.Version = "" }, false},
		{"space in revision", func(o *Options) { o.Meta.Revision = "abc -X main.x=y" }, false},
		{"bad tag", func(o *Options) { o.Tag = "a/b" }, false},
		{"negative time", func(o *Options) { o.Created = -1 }, false},
		{"unknown load arch", func(o *Options) { o.LoadArch = "riscv64" }, false},
		{"arm64 load arch", func(o *Options) { o.LoadArch = "arm64" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			err := o.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (!o.Meta.Created.Equal(time.Unix(o.Created, 0)) || !hasArch(o.LoadArch)) {
				t.Errorf("defaults not filled: created %v load-arch %q", o.Meta.Created, o.LoadArch)
			}
		})
	}
}
