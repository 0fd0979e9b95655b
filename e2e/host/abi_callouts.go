package host

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// calloutABI: HTTP calls to a cluster; the answer comes back through
// proxy_on_http_call_response (stream.go, dispatch and runCallout).
var calloutABI = []hostFunc{
	{"proxy_http_call", proxyHTTPCall},
}

func proxyHTTPCall(ctx context.Context, m api.Module, cPtr, cSize, hPtr, hSize, bPtr, bSize, tPtr, tSize, timeoutMs, retID uint32) uint32 {
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
}
