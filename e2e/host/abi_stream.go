package host

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// streamABI: resuming, resetting or answering the active stream.
var streamABI = []hostFunc{
	{"proxy_continue_stream", proxyContinueStream},
	{"proxy_close_stream", proxyCloseStream},
	{"proxy_send_local_response", proxySendLocalResponse},
}

func proxyContinueStream(ctx context.Context, st uint32) uint32 {
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
}

func proxyCloseStream(ctx context.Context, _ uint32) uint32 {
	w := workerFrom(ctx)
	s := w.streams[w.active]
	if s == nil {
		return statusBadArgument
	}
	s.reset = true
	s.poke()
	return statusOK
}

func proxySendLocalResponse(ctx context.Context, m api.Module, status, dPtr, dSize, bPtr, bSize, hPtr, hSize uint32, _ int32) uint32 {
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
}
