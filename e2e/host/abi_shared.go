package host

import (
	"context"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// sharedDataABI: proxy-wasm shared data, one store for every VM.
var sharedDataABI = []hostFunc{
	{"proxy_get_shared_data", proxyGetSharedData},
	{"proxy_set_shared_data", proxySetSharedData},
}

func proxyGetSharedData(ctx context.Context, m api.Module, kPtr, kSize, retPtr, retSize, casPtr uint32) uint32 {
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
}

func proxySetSharedData(ctx context.Context, m api.Module, kPtr, kSize, vPtr, vSize, cas uint32) uint32 {
	w := workerFrom(ctx)
	key, ok1 := read(m, kPtr, kSize)
	val, ok2 := read(m, vPtr, vSize)
	if !ok1 || !ok2 {
		return statusBadArgument
	}
	return w.h.shared.set(string(key), val, cas)
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
