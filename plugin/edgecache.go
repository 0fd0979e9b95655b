package main

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/idemgate/idemgate/plugin/canon"
	"github.com/idemgate/idemgate/plugin/frame"
	"github.com/idemgate/idemgate/plugin/policy"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// The edge cache keeps completed responses in proxy-wasm shared data, so
// that a retry of a completed request is replayed (or refused as a
// mismatch) by this Envoy without a callout. Shared data belongs to the
// vm_id: every worker thread of one Envoy sees the same cache.
//
// Shared data has no delete, so the cache is a fixed set of slots
// (policy.Config.EdgeCacheSlots): a record's id hashes to one slot, and
// a newer entry replaces whatever the slot held. Each entry is at most
// its route's edge_cache_max_entry_bytes, so the cache never holds more
// than slots × the largest edge_cache_max_entry_bytes (plus the slot
// names, about 20 bytes each).
//
// An entry is replayed until its expiry: min(record TTL, route's
// edge_cache_ttl) from when it was filled, and only while the VM knows
// the edge epoch the entry was filled under (epoch.go): an operator's
// delete or release changes the epoch, and every VM stops replaying what
// it filled before within about a second.
//
// An entry also keeps, when it fits, the request image (requestImage) of
// the request whose fingerprint it holds when that image is at most
// inlineImageMax bytes, else its SHA-256 (requestDigest). A retry whose
// image is the same bytes — SDK retries resend the very same request —
// would fingerprint the same by construction, so it is replayed after a
// byte comparison (a small image) or a digest comparison (a large one),
// without canonicalizing its body; any other retry is fingerprinted and
// compared as before. A held stream keeps the same until its fill: before
// issue 12 it kept the image whatever its size (up to
// edge_cache_max_entry_bytes), a copy of its body per held stream. Small
// images stay bytes because hashing costs more than comparing them
// (BenchmarkGuest's edge replay of a 1 KB body: about 20 µs more with a
// digest). A record the control plane
// loses earlier because its TTL ends first (the edge learnt of it from a
// late reserve) is still replayed here until then; one an operator
// deletes stops being replayed when the VM learns the new edge epoch,
// which a VM that cannot reach the control plane does not: then
// edge_cache_ttl is the staleness bound.

const (
	edgeSlotPrefix  = "idemgate.edge.v1."
	edgeIDTag       = "idemgate-edge-v1"
	edgeMagic       = "IGE4" // IGE1 had no request image, IGE2 no epoch, IGE3 no digest: misses
	requestImageTag = "idemgate-edge-request-v2"
	// edgeCASRetries bounds the compare-and-swap loop of one fill.
	edgeCASRetries = 8
)

// now returns the wall clock in Unix nanoseconds; entries carry absolute
// expiries because every VM of the vm_id reads them. Under Envoy,
// time.Now is WASI clock_time_get, the host's real-time clock.
var now = func() int64 { return time.Now().UnixNano() }

// sharedStore is proxy-wasm shared data; tests inject conflicts.
type sharedStore interface {
	get(key string) ([]byte, uint32, error)
	set(key string, value []byte, cas uint32) error
}

type hostShared struct{}

func (hostShared) get(key string) ([]byte, uint32, error) { return proxywasm.GetSharedData(key) }
func (hostShared) set(key string, v []byte, cas uint32) error {
	return proxywasm.SetSharedData(key, v, cas)
}

// edgeID names a control-plane record: the control plane's cluster, the
// scope (already a hash: credentials never reach shared data) and the
// key, framed with lengths and hashed, so the raw key is not stored
// either.
type edgeID [32]byte

func newEdgeID(cluster, scope, key string) edgeID {
	// One buffer (on the stack for usual sizes) and one Sum256: no hash
	// object or per-field conversion to allocate on every request.
	var buf [320]byte
	b := frame.Field(buf[:0], edgeIDTag)
	b = frame.Field(b, cluster)
	b = frame.Field(b, scope)
	b = frame.Field(b, key)
	return sha256.Sum256(b)
}

// slotKey is the shared-data key of the slot id hashes to.
func (id *edgeID) slotKey(slots int) string {
	slot := binary.BigEndian.Uint64(id[:8]) % uint64(slots)
	return edgeSlotPrefix + strconv.FormatUint(slot, 10)
}

// edgeEntry is a completed record as the edge keeps it.
type edgeEntry struct {
	id          edgeID
	expires     int64 // Unix nanoseconds
	epoch       int64 // the edge epoch the VM knew when it dispatched the reserve behind the entry
	fingerprint string
	// request is the request image of a request with this fingerprint,
	// or its digest (sha256.Size bytes: an image is never that short,
	// its tag's framing alone is longer); nil when it did not fit the
	// entry.
	request []byte
	resp    api.StoredResponse
}

// Encoding, big-endian: "IGE4", id (32), expires (8), epoch (8), status
// (2), flags (1: bit 0 body_omitted), fingerprint (2-byte length),
// request image or digest (4-byte length; 0: none), header count (2) and each
// header as name (2-byte length) and value (4-byte length), body (4-byte
// length).
const edgeFixedSize = 4 + 32 + 8 + 8 + 2 + 1 + 2 + 4 + 2 + 4

// edgeHeaderSize is the part decodeEdgeHeader reads.
const edgeHeaderSize = 4 + 32 + 8 + 8

// edgeEntrySize is the encoded size: what edge_cache_max_entry_bytes
// bounds, the request image or digest included.
func edgeEntrySize(fp string, request []byte, r *api.StoredResponse) int {
	n := edgeFixedSize + len(fp) + len(request) + len(r.Body)
	for _, kv := range r.Headers {
		n += 6 + len(kv[0]) + len(kv[1])
	}
	return n
}

// edgeBuf is where edgeFill encodes entries: the host copies a value on
// set, and a VM runs its callbacks one at a time. An entry larger than
// maxEdgeBuf is encoded in a buffer of its own, not kept.
var edgeBuf []byte

const maxEdgeBuf = policy.DefaultEdgeCacheMaxEntryBytes

// appendEntry appends the entry's bytes to b; false when a length does
// not fit its field (such an entry is simply not cached).
func (e *edgeEntry) appendEntry(b []byte) ([]byte, bool) {
	r := &e.resp
	if len(r.Headers) > 0xffff || r.Status < 0 || r.Status > 0xffff {
		return b, false
	}
	b = slices.Grow(b, edgeEntrySize(e.fingerprint, e.request, r))
	b = append(b, edgeMagic...)
	b = append(b, e.id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.expires))
	b = binary.BigEndian.AppendUint64(b, uint64(e.epoch))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Status))
	var flags byte
	if r.BodyOmitted {
		flags |= 1
	}
	b = append(b, flags)
	// A length that does not fit its field leaves it out and fails the
	// whole entry.
	b, okFP := frame.Field16(b, e.fingerprint)
	b, okRequest := frame.Field32(b, e.request)
	ok := okFP && okRequest
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Headers)))
	for _, kv := range r.Headers {
		var okName, okValue bool
		b, okName = frame.Field16(b, kv[0])
		b, okValue = frame.Field32(b, kv[1])
		ok = ok && okName && okValue
	}
	b, okBody := frame.Field32(b, r.Body)
	return b, ok && okBody
}

// edgeReader reads the encoding; a short or malformed entry sets bad.
type edgeReader struct {
	b   []byte
	bad bool
}

func (r *edgeReader) take(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *edgeReader) u16() int {
	if v := r.take(2); !r.bad {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (r *edgeReader) u32() int {
	if v := r.take(4); !r.bad {
		return int(binary.BigEndian.Uint32(v))
	}
	return 0
}

// decodeEdgeHeader reads the id, expiry and epoch only: enough to tell a
// miss.
func decodeEdgeHeader(b []byte) (id edgeID, expires, epoch int64, ok bool) {
	if len(b) < edgeFixedSize || string(b[:4]) != edgeMagic {
		return id, 0, 0, false
	}
	copy(id[:], b[4:36])
	return id, int64(binary.BigEndian.Uint64(b[36:44])), int64(binary.BigEndian.Uint64(b[44:52])), true
}

// decodeEdgeEntry decodes b. The request image and the body alias b, so
// that a replay copies neither: b is the host's buffer (under Envoy, one
// the guest allocated for this call; in the emulator, its stored value,
// which a write replaces rather than changes), so they are read only and
// never kept past the callback. Strings are copies.
func decodeEdgeEntry(b []byte) (*edgeEntry, bool) {
	id, expires, epoch, ok := decodeEdgeHeader(b)
	if !ok {
		return nil, false
	}
	e := &edgeEntry{id: id, expires: expires, epoch: epoch}
	r := edgeReader{b: b[edgeHeaderSize:]}
	e.resp.Status = r.u16()
	flags := r.take(1)
	e.fingerprint = string(r.take(r.u16()))
	if n := r.u32(); n > 0 && !r.bad {
		e.request = r.take(n)
	}
	if n := r.u16(); n > 0 && !r.bad {
		e.resp.Headers = make(api.Headers, 0, min(n, len(r.b)/6))
		for i := 0; i < n && !r.bad; i++ {
			name := string(r.take(r.u16()))
			value := string(r.take(r.u32()))
			e.resp.Headers = append(e.resp.Headers, [2]string{name, value})
		}
	}
	if n := r.u32(); n > 0 && !r.bad {
		e.resp.Body = r.take(n)
	}
	if r.bad || len(r.b) != 0 {
		return nil, false
	}
	e.resp.BodyOmitted = flags[0]&1 != 0
	return e, true
}

// slotSeen is what a read of a record's slot saw: its CAS and whether
// it held an entry of the record, expiring when. A stream keeps what its
// lookup saw, so that its fill can try its first compare-and-swap
// without reading the slot (≈ an entry's bytes) again.
type slotSeen struct {
	// cas is 0 when nothing usable was seen: the slot was not read, was
	// empty, or its read failed. A write with CAS 0 is unconditional
	// (Envoy), so it could not detect a write since: the fill reads again.
	cas     uint32
	mine    bool  // the slot held an entry of the record (its header at least)
	expires int64 // that entry's expiry
	epoch   int64 // and edge epoch
}

// readEdgeSlot reads the slot key of id: its value and what edgeStore
// needs of it.
func readEdgeSlot(st sharedStore, key string, id *edgeID) ([]byte, slotSeen, error) {
	b, cas, err := st.get(key)
	if err != nil {
		return nil, slotSeen{}, err
	}
	seen := slotSeen{cas: cas}
	if got, expires, epoch, ok := decodeEdgeHeader(b); ok && got == *id {
		seen.mine, seen.expires, seen.epoch = true, expires, epoch
	}
	return b, seen, nil
}

// edgeLookup returns the live entry of id in its slot key, or nil: an
// empty slot, another record's entry, an expired or unreadable one, one
// filled under another edge epoch than epoch are all misses. It also
// returns what it saw of the slot, for edgeStore.
func edgeLookup(st sharedStore, key string, id *edgeID, at, epoch int64) (*edgeEntry, slotSeen) {
	b, seen, err := readEdgeSlot(st, key, id)
	if err != nil || !seen.mine || seen.expires <= at || seen.epoch != epoch {
		return nil, seen
	}
	e, ok := decodeEdgeEntry(b)
	if !ok {
		return nil, seen
	}
	return e, seen
}

var errEdgeCASRetries = errors.New("shared data CAS mismatch on every retry")

// edgeStore writes an encoded entry of id into its slot key with
// compare-and-swap: it writes with the CAS it read, so only if nobody
// wrote in between, and on ErrorStatusCasMismatch reads the slot again,
// at most edgeCASRetries times in all. When the slot holds a live entry
// of the same record and edge epoch that lasts at least as long, there
// is nothing to write.
//
// The first attempt starts from seen, what this stream's lookup saw,
// instead of a fresh read, when that has a CAS: if the slot changed
// since, the CAS no longer matches and the loop reads it as usual.
// Envoy's CAS values come from one counter per host that every write
// increments (skipping 0), so a CAS is never given to the slot again
// after a write, short of 2³² writes in between. An empty slot reports
// CAS 0, which Envoy takes as "write whatever the slot holds": it cannot
// detect a write since the lookup, so then the slot is read first. (A
// fresh read that finds the slot empty writes with CAS 0 too: the first
// write of a slot is unconditional.)
func edgeStore(st sharedStore, key string, id *edgeID, seen slotSeen, value []byte, expires, epoch int64) error {
	for range edgeCASRetries {
		if seen.cas == 0 {
			var err error
			if _, seen, err = readEdgeSlot(st, key, id); err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
				return err
			}
		}
		if seen.mine && seen.epoch == epoch && seen.expires >= expires {
			return nil
		}
		err := st.set(key, value, seen.cas)
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return err
		}
		seen = slotSeen{} // read again
	}
	return errEdgeCASRetries
}

// The request image is a length-framed image (package frame) of
// everything canon.Fingerprint reads (v2 of the tag: with the host): the
// method, the host, the target, the content type, the selection, the
// values of the selected headers (as received, in order) and the body —
// tag, then each string as a field, each list as a count and its items. Framing makes it injective, so two requests with the
// same image have the same fingerprint under any canonicalization; the
// converse does not hold (a reordered JSON body differs here and
// fingerprints the same), which only costs the fast path.
func requestImage(b []byte, r *canon.Request, sel *canon.Selection) []byte {
	a := imageAppender{b}
	writeImage(&a, r, sel)
	return a.b
}

// inlineImageMax is the largest request image an entry or a held stream
// keeps as bytes; a larger one is kept as its digest.
const inlineImageMax = 2 << 10

// imageEqual reports whether image is requestImage(nil, r, sel), without
// building it: a replay from the edge then allocates nothing for it.
func imageEqual(image []byte, r *canon.Request, sel *canon.Selection) bool {
	c := imageComparer{rest: image, ok: true}
	writeImage(&c, r, sel)
	return c.ok && len(c.rest) == 0
}

// requestDigest is the SHA-256 of the request image, without building
// it: the framing and the short strings go through one reused
// buffer, the body straight into the hash. Edge entries and held streams
// keep these 32 bytes instead of a copy of the request (issue 12); a
// retry with the digest of the entry's request is byte-identical to it
// unless SHA-256 collides.
func requestDigest(r *canon.Request, sel *canon.Selection) [sha256.Size]byte {
	imageHash.Reset()
	w := imageHasher{buf: digestBuf[:0]}
	writeImage(&w, r, sel)
	w.flush()
	if cap(w.buf) <= maxDigestBuf {
		digestBuf = w.buf[:0]
	}
	var sum [sha256.Size]byte
	imageHash.Sum(sum[:0])
	return sum
}

// imageHash and digestBuf are reused by every digest: a VM runs its
// callbacks one at a time.
var (
	imageHash = sha256.New()
	digestBuf []byte
)

const maxDigestBuf = 16 << 10

// imageSink receives the image: appended, compared, or hashed.
type imageSink interface {
	count(n int)
	str(s string)
	raw(b []byte)
}

func writeImage[S imageSink](w S, r *canon.Request, sel *canon.Selection) {
	list := func(l []string) {
		w.count(len(l))
		for _, s := range l {
			w.str(s)
		}
	}
	w.str(requestImageTag)
	w.str(r.Method)
	w.str(r.Host)
	w.str(r.Target)
	w.str(r.ContentType)
	list(sel.Include)
	list(sel.Exclude)
	list(sel.Headers)
	for _, name := range sel.Headers {
		n := 0
		for _, kv := range r.Headers {
			if strings.EqualFold(kv[0], name) {
				n++
			}
		}
		w.count(n)
		for _, kv := range r.Headers {
			if strings.EqualFold(kv[0], name) {
				w.str(kv[1])
			}
		}
	}
	w.raw(r.Body)
}

// imageHasher feeds the image to imageHash: the framing and the short
// strings through buf, the body straight.
type imageHasher struct{ buf []byte }

func (w *imageHasher) count(n int)  { w.buf = frame.Count(w.buf, n) }
func (w *imageHasher) str(s string) { w.buf = frame.Field(w.buf, s) }
func (w *imageHasher) raw(v []byte) {
	w.count(len(v))
	w.flush()
	imageHash.Write(v)
}
func (w *imageHasher) flush() {
	imageHash.Write(w.buf)
	w.buf = w.buf[:0]
}

type imageAppender struct{ b []byte }

func (a *imageAppender) count(n int)  { a.b = frame.Count(a.b, n) }
func (a *imageAppender) str(s string) { a.b = frame.Field(a.b, s) }
func (a *imageAppender) raw(v []byte) { a.b = frame.Field(a.b, v) }

// imageComparer matches the image against rest; ok turns false at the
// first difference.
type imageComparer struct {
	rest []byte
	ok   bool
}

func (c *imageComparer) count(n int) {
	if c.ok {
		c.rest, c.ok = frame.CutCount(c.rest, n)
	}
}

func (c *imageComparer) str(s string) {
	if c.ok {
		c.rest, c.ok = frame.CutField(c.rest, s)
	}
}

func (c *imageComparer) raw(v []byte) {
	if c.ok {
		c.rest, c.ok = frame.CutField(c.rest, v)
	}
}

// requestImageSize is len(requestImage(nil, r, sel)), without building it.
func requestImageSize(r *canon.Request, sel *canon.Selection) int {
	const c = frame.CountLen
	n := c*6 + len(requestImageTag) + len(r.Method) + len(r.Host) + len(r.Target) + len(r.ContentType) + len(r.Body)
	for _, l := range [][]string{sel.Include, sel.Exclude, sel.Headers} {
		n += c
		for _, s := range l {
			n += c + len(s)
		}
	}
	for _, name := range sel.Headers {
		n += c
		for _, kv := range r.Headers {
			if strings.EqualFold(kv[0], name) {
				n += c + len(kv[1])
			}
		}
	}
	return n
}
