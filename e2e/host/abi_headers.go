package host

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// headerABI: the request's and response's headers and trailers, and a
// callout answer's.
var headerABI = []hostFunc{
	{"proxy_get_header_map_pairs", proxyGetHeaderMapPairs},
	{"proxy_set_header_map_pairs", proxySetHeaderMapPairs},
	{"proxy_get_header_map_value", proxyGetHeaderMapValue},
	{"proxy_add_header_map_value", proxyAddHeaderMapValue},
	{"proxy_replace_header_map_value", proxyReplaceHeaderMapValue},
	{"proxy_remove_header_map_value", proxyRemoveHeaderMapValue},
}

func proxyGetHeaderMapPairs(ctx context.Context, m api.Module, mt, retPtr, retSize uint32) uint32 {
	w := workerFrom(ctx)
	hm, ok := w.headerMap(mt)
	if !ok {
		return statusNotFound
	}
	return w.give(m, serializeMap(*hm), retPtr, retSize)
}

func proxySetHeaderMapPairs(ctx context.Context, m api.Module, mt, ptr, size uint32) uint32 {
	w := workerFrom(ctx)
	hm, ok := w.headerMap(mt)
	data, rok := read(m, ptr, size)
	if !ok || !rok {
		return statusBadArgument
	}
	pairs, err := deserializeMap(data)
	if err != nil {
		return statusBadArgument
	}
	*hm = pairs
	return statusOK
}

func proxyGetHeaderMapValue(ctx context.Context, m api.Module, mt, kPtr, kSize, retPtr, retSize uint32) uint32 {
	w := workerFrom(ctx)
	hm, ok := w.headerMap(mt)
	key, rok := read(m, kPtr, kSize)
	if !ok || !rok {
		return statusBadArgument
	}
	// Envoy returns the first of repeated values; this host joins them
	// with "," (README lists it). The filter reads whole maps instead.
	var vals []string
	for _, kv := range *hm {
		if strings.EqualFold(kv[0], string(key)) {
			vals = append(vals, kv[1])
		}
	}
	if vals == nil {
		return statusNotFound
	}
	return w.give(m, []byte(strings.Join(vals, ",")), retPtr, retSize)
}

func proxyAddHeaderMapValue(ctx context.Context, m api.Module, mt, kPtr, kSize, vPtr, vSize uint32) uint32 {
	return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, vPtr, vSize, "add")
}

func proxyReplaceHeaderMapValue(ctx context.Context, m api.Module, mt, kPtr, kSize, vPtr, vSize uint32) uint32 {
	return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, vPtr, vSize, "replace")
}

func proxyRemoveHeaderMapValue(ctx context.Context, m api.Module, mt, kPtr, kSize uint32) uint32 {
	return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, 0, 0, "remove")
}

// headerMap returns the header map of type mt as the current call sees it.
func (w *worker) headerMap(mt uint32) (*[][2]string, bool) {
	switch mt {
	case mapCallResponseHeaders, mapCallResponseTrail:
		if w.callout == nil {
			return nil, false
		}
		if mt == mapCallResponseHeaders {
			return &w.callout.headers, true
		}
		return &w.callout.trailers, true
	}
	s := w.streams[w.active]
	if s == nil {
		return nil, false
	}
	switch mt {
	case mapRequestHeaders:
		return &s.reqHeaders, true
	case mapRequestTrailers:
		return &s.reqTrailers, true
	case mapResponseHeaders:
		return &s.respHeaders, true
	case mapResponseTrailers:
		return &s.respTrailers, true
	}
	return nil, false
}

func (w *worker) editHeader(m api.Module, mt, kPtr, kSize, vPtr, vSize uint32, op string) uint32 {
	hm, ok := w.headerMap(mt)
	key, ok1 := read(m, kPtr, kSize)
	val, ok2 := read(m, vPtr, vSize)
	if !ok || !ok1 || !ok2 {
		return statusBadArgument
	}
	k := strings.ToLower(string(key))
	var kept [][2]string
	for _, kv := range *hm {
		if op == "add" || kv[0] != k {
			kept = append(kept, kv)
		}
	}
	if op != "remove" {
		kept = append(kept, [2]string{k, string(val)})
	}
	*hm = kept
	return statusOK
}

// serializeMap encodes header pairs the ABI's way: a count, the sizes of
// every name and value, then each name and value followed by a NUL.
func serializeMap(pairs [][2]string) []byte {
	size := 4
	for _, kv := range pairs {
		size += 8 + len(kv[0]) + len(kv[1]) + 2
	}
	out := make([]byte, 0, size)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(pairs)))
	for _, kv := range pairs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(kv[0])))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(kv[1])))
	}
	for _, kv := range pairs {
		out = append(append(out, kv[0]...), 0)
		out = append(append(out, kv[1]...), 0)
	}
	return out
}

// deserializeMap decodes serializeMap's format, refusing truncated input.
func deserializeMap(b []byte) ([][2]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("header map of %d bytes", len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/10 {
		return nil, fmt.Errorf("header map claims %d pairs in %d bytes", n, len(b))
	}
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	pairs := make([][2]string, n)
	for i := range n {
		for j := range 2 {
			l := int(binary.LittleEndian.Uint32(sizes[8*i+4*j:]))
			if l+1 > len(data) {
				return nil, fmt.Errorf("header map pair %d overruns", i)
			}
			pairs[i][j] = string(data[:l])
			data = data[l+1:]
		}
	}
	return pairs, nil
}
