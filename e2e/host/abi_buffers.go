package host

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// bufferABI: the bodies, the plugin configuration and a callout's answer.
var bufferABI = []hostFunc{
	{"proxy_get_buffer_bytes", proxyGetBufferBytes},
	{"proxy_set_buffer_bytes", proxySetBufferBytes},
}

func proxyGetBufferBytes(ctx context.Context, m api.Module, bt, start, maxSize, retPtr, retSize uint32) uint32 {
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
}

func proxySetBufferBytes(ctx context.Context, m api.Module, bt, start, length, ptr, size uint32) uint32 {
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
