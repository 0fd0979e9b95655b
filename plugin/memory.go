package main

import (
	"runtime"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
)

// Standard Go on wasm never returns linear memory to the host: once the
// heap has grown, the VM keeps that memory. The filter watches its own
// heap every memCheckEvery streams, publishes it as gauges, and forces a
// collection when the heap has grown past heapGCBound, so that a burst
// of garbage between the runtime's own collections cannot grow the
// memory for good.
const memCheckEvery = 128

// heapGCBound is a variable for a test only.
var heapGCBound uint64 = 8 << 20

// memWatch is per VM (package state: one VM, one Go runtime), shared by
// its plugin contexts.
var memWatch struct {
	streams     int
	heap, sys   proxywasm.MetricGauge
	defined     bool
	collections int
}

// defineMemGauges (re)defines the gauges; every plugin start does, since
// a host may have been replaced (defining a name again returns the same
// metric in Envoy). heap_alloc_bytes is the Go heap in use
// (runtime.MemStats.HeapAlloc); wasm_memory_bytes what the Go runtime
// obtained from the host (MemStats.Sys: on wasm, the linear memory it
// grew, which it never gives back).
func defineMemGauges() {
	memWatch.heap = proxywasm.DefineGaugeMetric("idemgate.heap_alloc_bytes")
	memWatch.sys = proxywasm.DefineGaugeMetric("idemgate.wasm_memory_bytes")
	memWatch.defined = true
	checkMemory()
}

// streamEnded counts a stream and, every memCheckEvery, checks memory.
func streamEnded() {
	memWatch.streams++
	if memWatch.streams%memCheckEvery == 0 {
		checkMemory()
	}
}

func checkMemory() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > heapGCBound {
		runtime.GC()
		memWatch.collections++
		runtime.ReadMemStats(&ms)
	}
	if memWatch.defined {
		setGauge(memWatch.heap, ms.HeapAlloc)
		setGauge(memWatch.sys, ms.Sys)
	}
}

// setGauge sets a gauge to v. The SDK's MetricGauge only adds; the
// proxy_record_metric call behind MetricHistogram.Record sets a gauge in
// Envoy (and in the emulator). Each VM (Envoy worker thread) sets its own
// value, so the gauge shows the VM that reported last: the memory of one
// VM, not the sum.
func setGauge(g proxywasm.MetricGauge, v uint64) {
	proxywasm.MetricHistogram(g).Record(v)
}
