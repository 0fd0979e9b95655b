package host

import (
	"context"
	"encoding/binary"
	"log/slog"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// loggingABI: the module's logs, and the attributes it reads.
var loggingABI = []hostFunc{
	{"proxy_log", proxyLog},
	{"proxy_get_property", proxyGetProperty},
}

func proxyLog(ctx context.Context, m api.Module, level, ptr, size uint32) uint32 {
	w := workerFrom(ctx)
	msg, ok := read(m, ptr, size)
	if !ok {
		return statusBadArgument
	}
	w.log.Log(ctx, slogLevel(level), string(msg), "context", w.active)
	return statusOK
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

func proxyGetProperty(ctx context.Context, m api.Module, pPtr, pSize, retPtr, retSize uint32) uint32 {
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
