package host

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Status values of the proxy-wasm ABI (0.2.x).
const (
	statusOK              = 0
	statusNotFound        = 1
	statusBadArgument     = 2
	statusEmpty           = 7
	statusCasMismatch     = 8
	statusInternalFailure = 10
)

// Buffer and map types of the ABI.
const (
	bufRequestBody      = 0
	bufResponseBody     = 1
	bufCallResponseBody = 4
	bufVMConfiguration  = 6
	bufPluginConfig     = 7

	mapRequestHeaders      = 0
	mapRequestTrailers     = 1
	mapResponseHeaders     = 2
	mapResponseTrailers    = 3
	mapCallResponseHeaders = 6
	mapCallResponseTrail   = 7

	streamRequest  = 0
	streamResponse = 1
)

// instantiateABI provides the "env" functions a proxy-wasm module
// imports: the ones the Go SDK uses for HTTP filters. A module importing
// one that is missing fails to instantiate, naming it.
func (h *Host) instantiateABI(ctx context.Context) error {
	b := h.runtime.NewHostModuleBuilder("env")
	fn := func(name string, f any) { b.NewFunctionBuilder().WithFunc(f).Export(name) }

	fn("proxy_log", func(ctx context.Context, m api.Module, level, ptr, size uint32) uint32 {
		w := workerFrom(ctx)
		msg, ok := read(m, ptr, size)
		if !ok {
			return statusBadArgument
		}
		w.log.Log(ctx, slogLevel(level), string(msg), "context", w.active)
		return statusOK
	})
	fn("proxy_set_tick_period_milliseconds", func(ctx context.Context, ms uint32) uint32 {
		w := workerFrom(ctx)
		w.tickPeriod = time.Duration(ms) * time.Millisecond
		select {
		case w.tickChanged <- struct{}{}:
		default:
		}
		return statusOK
	})
	fn("proxy_set_effective_context", func(ctx context.Context, id uint32) uint32 {
		w := workerFrom(ctx)
		if id != rootContextID && w.streams[id] == nil {
			return statusBadArgument
		}
		w.active = id
		return statusOK
	})
	fn("proxy_done", func(context.Context) uint32 { return statusOK })

	fn("proxy_get_buffer_bytes", func(ctx context.Context, m api.Module, bt, start, maxSize, retPtr, retSize uint32) uint32 {
		w := workerFrom(ctx)
		buf, ok := w.buffer(bt)
		if !ok {
			return statusNotFound
		}
		if int(start) > len(buf) {
			return statusBadArgument
		}
		end := len(buf)
		if uint64(start)+uint64(maxSize) < uint64(end) {
			end = int(start + maxSize)
		}
		return w.give(m, buf[start:end], retPtr, retSize)
	})
	fn("proxy_set_buffer_bytes", func(ctx context.Context, m api.Module, bt, start, length, ptr, size uint32) uint32 {
		w := workerFrom(ctx)
		data, ok := read(m, ptr, size)
		if !ok {
			return statusBadArgument
		}
		s := w.streams[w.active]
		var buf *[]byte
		switch {
		case s != nil && bt == bufRequestBody:
			buf = &s.reqBody
		case s != nil && bt == bufResponseBody:
			buf = &s.respBody
		default:
			return statusBadArgument
		}
		// Replace [start, start+length) with data, clamped to the buffer.
		old := *buf
		lo := min(int(start), len(old))
		hi := min(lo+int(length), len(old))
		nb := make([]byte, 0, len(old)-(hi-lo)+len(data))
		nb = append(append(append(nb, old[:lo]...), data...), old[hi:]...)
		*buf = nb
		return statusOK
	})

	fn("proxy_get_header_map_pairs", func(ctx context.Context, m api.Module, mt, retPtr, retSize uint32) uint32 {
		w := workerFrom(ctx)
		hm, ok := w.headerMap(mt)
		if !ok {
			return statusNotFound
		}
		return w.give(m, serializeMap(*hm), retPtr, retSize)
	})
	fn("proxy_set_header_map_pairs", func(ctx context.Context, m api.Module, mt, ptr, size uint32) uint32 {
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
	})
	fn("proxy_get_header_map_value", func(ctx context.Context, m api.Module, mt, kPtr, kSize, retPtr, retSize uint32) uint32 {
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
	})
	fn("proxy_add_header_map_value", func(ctx context.Context, m api.Module, mt, kPtr, kSize, vPtr, vSize uint32) uint32 {
		return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, vPtr, vSize, "add")
	})
	fn("proxy_replace_header_map_value", func(ctx context.Context, m api.Module, mt, kPtr, kSize, vPtr, vSize uint32) uint32 {
		return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, vPtr, vSize, "replace")
	})
	fn("proxy_remove_header_map_value", func(ctx context.Context, m api.Module, mt, kPtr, kSize uint32) uint32 {
		return workerFrom(ctx).editHeader(m, mt, kPtr, kSize, 0, 0, "remove")
	})

	fn("proxy_continue_stream", func(ctx context.Context, st uint32) uint32 {
		w := workerFrom(ctx)
		s := w.streams[w.active]
		if s == nil {
			return statusBadArgument
		}
		switch st {
		case streamRequest:
			s.reqContinued = true
		case streamResponse:
			s.respContinued = true
		default:
			return statusBadArgument
		}
		s.poke()
		return statusOK
	})
	fn("proxy_close_stream", func(ctx context.Context, _ uint32) uint32 {
		w := workerFrom(ctx)
		s := w.streams[w.active]
		if s == nil {
			return statusBadArgument
		}
		s.reset = true
		s.poke()
		return statusOK
	})
	fn("proxy_send_local_response", func(ctx context.Context, m api.Module, status, dPtr, dSize, bPtr, bSize, hPtr, hSize uint32, _ int32) uint32 {
		w := workerFrom(ctx)
		s := w.streams[w.active]
		details, ok1 := read(m, dPtr, dSize)
		body, ok2 := read(m, bPtr, bSize)
		hdata, ok3 := read(m, hPtr, hSize)
		if s == nil || !ok1 || !ok2 || !ok3 {
			return statusBadArgument
		}
		headers, err := deserializeMap(hdata)
		if err != nil {
			return statusBadArgument
		}
		if s.local != nil || s.responded {
			// Envoy refuses a second local reply, or one after the
			// response started.
			return statusBadArgument
		}
		s.local = &localReply{status: int(status), details: string(details), body: body, headers: headers}
		s.poke()
		return statusOK
	})

	fn("proxy_http_call", func(ctx context.Context, m api.Module, cPtr, cSize, hPtr, hSize, bPtr, bSize, tPtr, tSize, timeoutMs, retID uint32) uint32 {
		w := workerFrom(ctx)
		cluster, ok1 := read(m, cPtr, cSize)
		hdata, ok2 := read(m, hPtr, hSize)
		body, ok3 := read(m, bPtr, bSize)
		if !ok1 || !ok2 || !ok3 {
			return statusBadArgument
		}
		headers, err := deserializeMap(hdata)
		if err != nil {
			return statusBadArgument
		}
		id, st := w.dispatch(string(cluster), headers, body, time.Duration(timeoutMs)*time.Millisecond)
		if st != statusOK {
			return st
		}
		if !m.Memory().WriteUint32Le(retID, id) {
			return statusBadArgument
		}
		return statusOK
	})

	fn("proxy_get_shared_data", func(ctx context.Context, m api.Module, kPtr, kSize, retPtr, retSize, casPtr uint32) uint32 {
		w := workerFrom(ctx)
		key, ok := read(m, kPtr, kSize)
		if !ok {
			return statusBadArgument
		}
		v, found := w.h.shared.get(string(key))
		if !found {
			return statusNotFound
		}
		if !m.Memory().WriteUint32Le(casPtr, v.cas) {
			return statusBadArgument
		}
		return w.give(m, v.data, retPtr, retSize)
	})
	fn("proxy_set_shared_data", func(ctx context.Context, m api.Module, kPtr, kSize, vPtr, vSize, cas uint32) uint32 {
		w := workerFrom(ctx)
		key, ok1 := read(m, kPtr, kSize)
		val, ok2 := read(m, vPtr, vSize)
		if !ok1 || !ok2 {
			return statusBadArgument
		}
		return w.h.shared.set(string(key), val, cas)
	})

	fn("proxy_define_metric", func(ctx context.Context, m api.Module, kind, nPtr, nSize, retID uint32) uint32 {
		w := workerFrom(ctx)
		name, ok := read(m, nPtr, nSize)
		if !ok || kind > metricHistogram {
			return statusBadArgument
		}
		id := w.h.metrics.define(string(name), kind)
		if !m.Memory().WriteUint32Le(retID, id) {
			return statusBadArgument
		}
		return statusOK
	})
	fn("proxy_increment_metric", func(ctx context.Context, id uint32, delta int64) uint32 {
		return workerFrom(ctx).h.metrics.increment(id, delta)
	})
	fn("proxy_record_metric", func(ctx context.Context, id uint32, v uint64) uint32 {
		return workerFrom(ctx).h.metrics.record(id, v)
	})
	fn("proxy_get_metric", func(ctx context.Context, m api.Module, id, retPtr uint32) uint32 {
		v, st := workerFrom(ctx).h.metrics.get(id)
		if st == statusOK && !m.Memory().WriteUint64Le(retPtr, v) {
			return statusBadArgument
		}
		return st
	})

	fn("proxy_get_property", func(ctx context.Context, m api.Module, pPtr, pSize, retPtr, retSize uint32) uint32 {
		w := workerFrom(ctx)
		path, ok := read(m, pPtr, pSize)
		if !ok {
			return statusBadArgument
		}
		v, found := w.property(strings.Split(string(path), "\x00"))
		if !found {
			return statusNotFound
		}
		return w.give(m, v, retPtr, retSize)
	})

	_, err := b.Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("host: proxy-wasm ABI: %w", err)
	}
	return nil
}

// read copies size bytes at ptr out of the module's memory.
func read(m api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	b, ok := m.Memory().Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

// give hands data to the module the ABI's way: memory the module
// allocates (proxy_on_memory_allocate), its address and size written at
// retPtr and retSize.
func (w *worker) give(m api.Module, data []byte, retPtr, retSize uint32) uint32 {
	var ptr uint32
	if len(data) > 0 {
		res, err := m.ExportedFunction("proxy_on_memory_allocate").Call(w.ctx, uint64(len(data)))
		if err != nil || len(res) == 0 {
			return statusInternalFailure
		}
		ptr = uint32(res[0])
		if !m.Memory().Write(ptr, data) {
			return statusInternalFailure
		}
	}
	if !m.Memory().WriteUint32Le(retPtr, ptr) || !m.Memory().WriteUint32Le(retSize, uint32(len(data))) {
		return statusBadArgument
	}
	return statusOK
}

// buffer returns the buffer of type bt as the current call sees it.
func (w *worker) buffer(bt uint32) ([]byte, bool) {
	switch bt {
	case bufPluginConfig:
		if len(w.h.cfg.PluginConfig) == 0 {
			return nil, false
		}
		return w.h.cfg.PluginConfig, true
	case bufVMConfiguration:
		return nil, false
	case bufCallResponseBody:
		if w.callout == nil {
			return nil, false
		}
		return w.callout.body, true
	}
	s := w.streams[w.active]
	if s == nil {
		return nil, false
	}
	switch bt {
	case bufRequestBody:
		return s.reqBody, true
	case bufResponseBody:
		return s.respBody, true
	}
	return nil, false
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

// property answers proxy_get_property for the attributes this host knows
// (Envoy's names); others are NotFound. Strings are raw bytes, integers
// 8-byte little-endian, as in Envoy.
func (w *worker) property(path []string) ([]byte, bool) {
	name := strings.Join(path, ".")
	switch name {
	case "plugin_name", "plugin_vm_id", "plugin_root_id":
		return []byte{}, true
	}
	s := w.streams[w.active]
	if s == nil {
		return nil, false
	}
	if v, found, ok := routeProperty(s.route, path); ok {
		return v, found
	}
	switch name {
	case "response.code_details":
		if s.codeDetails == "" {
			return nil, false
		}
		return []byte(s.codeDetails), true
	case "response.code":
		if s.respStatus == 0 {
			return nil, false
		}
		return binary.LittleEndian.AppendUint64(nil, uint64(s.respStatus)), true
	case "request.id":
		return []byte(s.requestID), true
	}
	return nil, false
}

func slogLevel(l uint32) slog.Level {
	switch l {
	case 0, 1:
		return slog.LevelDebug
	case 2:
		return slog.LevelInfo
	case 3:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
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

// sharedData is proxy-wasm shared data: one map for every VM of the
// host (Envoy: per vm_id, shared by the workers), with a CAS per value.
type sharedData struct {
	mu      sync.Mutex
	m       map[string]sharedValue
	lastCAS uint32
}

type sharedValue struct {
	data []byte
	cas  uint32
}

func (s *sharedData) get(key string) (sharedValue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

// set stores the value when cas is 0 or matches the current one; a
// missing key is stored whatever the cas, as proxy-wasm-cpp-host does.
func (s *sharedData) set(key string, data []byte, cas uint32) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[key]; ok && cas != 0 && cas != cur.cas {
		return statusCasMismatch
	}
	s.lastCAS++
	if s.lastCAS == 0 {
		s.lastCAS = 1
	}
	s.m[key] = sharedValue{data: data, cas: s.lastCAS}
	return statusOK
}

// Metric kinds of the ABI.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// metrics are the modules' metrics; one per name across the VMs, as in
// Envoy's stats store.
type metrics struct {
	mu     sync.Mutex
	byName map[string]uint32
	list   []metric
}

type metric struct {
	name  string
	kind  uint32
	value uint64 // counter, gauge; a histogram's sum
	count uint64 // a histogram's number of records
}

func (ms *metrics) define(name string, kind uint32) uint32 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if id, ok := ms.byName[name]; ok {
		return id
	}
	id := uint32(len(ms.list))
	ms.list = append(ms.list, metric{name: name, kind: kind})
	ms.byName[name] = id
	return id
}

func (ms *metrics) increment(id uint32, delta int64) uint32 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if int(id) >= len(ms.list) || ms.list[id].kind == metricHistogram {
		return statusNotFound
	}
	ms.list[id].value = uint64(int64(ms.list[id].value) + delta)
	return statusOK
}

func (ms *metrics) record(id uint32, v uint64) uint32 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if int(id) >= len(ms.list) {
		return statusNotFound
	}
	m := &ms.list[id]
	switch m.kind {
	case metricHistogram:
		m.value += v
		m.count++
	default:
		m.value = v
	}
	return statusOK
}

func (ms *metrics) get(id uint32) (uint64, uint32) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if int(id) >= len(ms.list) {
		return 0, statusNotFound
	}
	return ms.list[id].value, statusOK
}
