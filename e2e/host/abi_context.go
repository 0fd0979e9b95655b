package host

import (
	"context"
	"time"
)

// contextABI: which context a call acts for, and the root context's tick.
var contextABI = []hostFunc{
	{"proxy_set_tick_period_milliseconds", proxySetTickPeriod},
	{"proxy_set_effective_context", proxySetEffectiveContext},
	{"proxy_done", proxyDone},
}

func proxySetTickPeriod(ctx context.Context, ms uint32) uint32 {
	w := workerFrom(ctx)
	w.tickPeriod = time.Duration(ms) * time.Millisecond
	select {
	case w.tickChanged <- struct{}{}:
	default:
	}
	return statusOK
}

func proxySetEffectiveContext(ctx context.Context, id uint32) uint32 {
	w := workerFrom(ctx)
	if id != rootContextID && w.streams[id] == nil {
		return statusBadArgument
	}
	w.active = id
	return statusOK
}

func proxyDone(context.Context) uint32 { return statusOK }
