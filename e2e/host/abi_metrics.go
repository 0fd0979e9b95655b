package host

import (
	"context"
	"sync"

	"github.com/tetratelabs/wazero/api"
)

// metricsABI: the module's counters, gauges and histograms.
var metricsABI = []hostFunc{
	{"proxy_define_metric", proxyDefineMetric},
	{"proxy_increment_metric", proxyIncrementMetric},
	{"proxy_record_metric", proxyRecordMetric},
	{"proxy_get_metric", proxyGetMetric},
}

func proxyDefineMetric(ctx context.Context, m api.Module, kind, nPtr, nSize, retID uint32) uint32 {
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
}

func proxyIncrementMetric(ctx context.Context, id uint32, delta int64) uint32 {
	return workerFrom(ctx).h.metrics.increment(id, delta)
}

func proxyRecordMetric(ctx context.Context, id uint32, v uint64) uint32 {
	return workerFrom(ctx).h.metrics.record(id, v)
}

func proxyGetMetric(ctx context.Context, m api.Module, id, retPtr uint32) uint32 {
	v, st := workerFrom(ctx).h.metrics.get(id)
	if st == statusOK && !m.Memory().WriteUint64Le(retPtr, v) {
		return statusBadArgument
	}
	return st
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
