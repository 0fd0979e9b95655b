package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteWasmTar writes the module image as a Docker-style tarball
// (go-containerregistry's tarball.Write: manifest.json, the config, the
// gzipped layer), which every `docker load` and `crane push` read.
func WriteWasmTar(path string, tag name.Tag, img v1.Image) error {
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// WriteIndexTar writes a multi-platform image as one tar holding two
// layouts over the same blobs, as `docker save` does since Docker 25:
//
//   - an OCI image layout (oci-layout, index.json naming the index
//     "repo:tag", blobs/sha256/…): what Docker's containerd image store
//     loads as one multi-platform image, and, extracted to a directory,
//     what `crane push --index DIR REF` pushes, digest unchanged;
//   - a Docker manifest.json listing one image per platform, tagged
//     "repo:tag-os-arch", plus "repo:tag" on the loadArch image: what
//     `docker load` reads on the classic store and on Docker before 25,
//     which cannot load an index.
//
// go-containerregistry writes either a Docker tarball of single images
// (tarball.MultiRefWrite) or a layout directory (layout.Write), not an
// index in one file; hence this. Entries come in a fixed order with fixed
// times: the same index gives the same bytes.
func WriteIndexTar(w io.Writer, tag name.Tag, idx v1.ImageIndex, loadArch string) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	rawIndex, err := idx.RawManifest()
	if err != nil {
		return err
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		return err
	}
	mt, err := idx.MediaType()
	if err != nil {
		return err
	}
	// Docker's familiar form ("idemgate-controlplane:dev") for its
	// manifest.json; containerd wants the full name
	// ("docker.io/library/idemgate-controlplane:dev").
	short := tag.String()
	full := tag.Name()
	if tag.Context().RegistryStr() == name.DefaultRegistry {
		full = "docker.io/" + tag.Context().RepositoryStr() + ":" + tag.TagStr()
	}
	ociIndex := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.index.v1+json",
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Digest:    idxDigest,
			Size:      int64(len(rawIndex)),
			Annotations: map[string]string{
				// containerd (and so Docker's containerd store) names
				// the image after the first; the OCI spec defines the
				// second as the tag alone.
				"io.containerd.image.name":          full,
				"org.opencontainers.image.ref.name": tag.TagStr(),
			},
		}},
	}
	blobs := map[v1.Hash][]byte{}
	var order []v1.Hash // first seen first: a fixed order
	add := func(h v1.Hash, b []byte) {
		if _, ok := blobs[h]; !ok {
			blobs[h] = b
			order = append(order, h)
		}
	}
	add(idxDigest, rawIndex)
	var dockerManifest tarball.Manifest
	loadTagged := false
	for _, desc := range im.Manifests {
		if desc.Platform == nil {
			return fmt.Errorf("index entry %s has no platform", desc.Digest)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		raw, err := img.RawManifest()
		if err != nil {
			return err
		}
		add(desc.Digest, raw)
		cfgName, err := img.ConfigName()
		if err != nil {
			return err
		}
		rawCfg, err := img.RawConfigFile()
		if err != nil {
			return err
		}
		add(cfgName, rawCfg)
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		entry := tarball.Descriptor{Config: blobPath(cfgName)}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			add(d, b)
			entry.Layers = append(entry.Layers, blobPath(d))
		}
		entry.RepoTags = []string{short + "-" + desc.Platform.OS + "-" + desc.Platform.Architecture}
		if desc.Platform.Architecture == loadArch && !loadTagged {
			entry.RepoTags = append([]string{short}, entry.RepoTags...)
			loadTagged = true
		}
		dockerManifest = append(dockerManifest, entry)
	}
	if !loadTagged {
		return fmt.Errorf("no image for architecture %q in the index: want one of its platforms", loadArch)
	}
	ociIndexJSON, err := json.Marshal(ociIndex)
	if err != nil {
		return err
	}
	manifestJSON, err := json.Marshal(dockerManifest)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	entry := func(name string, data []byte, dir bool) error {
		h := &tar.Header{Name: name, Mode: 0o644, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Size: int64(len(data)), Format: tar.FormatPAX}
		if dir {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := entry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), false); err != nil {
		return err
	}
	if err := entry("index.json", ociIndexJSON, false); err != nil {
		return err
	}
	if err := entry("blobs/", nil, true); err != nil {
		return err
	}
	if err := entry("blobs/sha256/", nil, true); err != nil {
		return err
	}
	for _, h := range order {
		if err := entry(blobPath(h), blobs[h], false); err != nil {
			return err
		}
	}
	if err := entry("manifest.json", manifestJSON, false); err != nil {
		return err
	}
	return tw.Close()
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

var blobName = regexp.MustCompile(`^blobs/sha256/[0-9a-f]{64}$`)

// maxTarEntry bounds one entry read from an image tarball: our largest
// blob is a compressed control-plane binary of some MiB.
const maxTarEntry = 512 << 20

// ReadIndexTar reads the OCI layout in a tar written by WriteIndexTar:
// it extracts the layout's files (and nothing else: no other names, no
// links, no paths out of dir) into dir and returns the one index it
// names.
func ReadIndexTar(path, dir string) (v1.ImageIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case h.Typeflag == tar.TypeDir, h.Name == "manifest.json":
			continue
		case h.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("%s: entry %q is not a regular file", path, h.Name)
		case h.Name != "oci-layout" && h.Name != "index.json" && !blobName.MatchString(h.Name):
			return nil, fmt.Errorf("%s: unexpected entry %q: not an OCI image layout", path, h.Name)
		case h.Size > maxTarEntry:
			return nil, fmt.Errorf("%s: entry %q is %d bytes, over %d", path, h.Name, h.Size, maxTarEntry)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return nil, err
		}
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI image layout: %w", path, err)
	}
	root, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rm, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	if len(rm.Manifests) != 1 || !rm.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("%s: index.json should name one image index, names %d entries", path, len(rm.Manifests))
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Blobs are read lazily; check every digest now, not mid-push.
	if err := verifyIndex(idx); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return idx, nil
}

// verifyIndex reads every blob the index reaches and checks its digest.
func verifyIndex(idx v1.ImageIndex) error {
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	if err := checkDigest(idx.Digest, raw); err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if err := verifyImage(img); err != nil {
			return fmt.Errorf("image %s: %w", d.Digest, err)
		}
	}
	return nil
}

func verifyImage(img v1.Image) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if err := checkDigest(img.Digest, raw); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if h, _, err := v1.SHA256(bytes.NewReader(cfg)); err != nil || h != m.Config.Digest {
		return fmt.Errorf("config digest %v, manifest says %s (%v)", h, m.Config.Digest, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if h != m.Layers[i].Digest {
			return fmt.Errorf("layer %d: content digest %s, manifest says %s", i, h, m.Layers[i].Digest)
		}
	}
	return nil
}

func checkDigest(digest func() (v1.Hash, error), raw []byte) error {
	want, err := digest()
	if err != nil {
		return err
	}
	if got, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || got != want {
		return fmt.Errorf("manifest digest %v, want %s (%v)", got, want, err)
	}
	return nil
}
