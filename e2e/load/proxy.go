package load

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	"github.com/idemgate/idemgate/controlplane/api"
)

// ReserveCounter sits between the gateways and the control plane and
// counts the reserve calls per key: the control plane's metrics count
// reserves, not whose. Everything is passed through unchanged.
type ReserveCounter struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	byKey map[string]int
}

// NewReserveCounter forwards to the control plane at base (http://host:port).
func NewReserveCounter(base string) (*ReserveCounter, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	return &ReserveCounter{proxy: httputil.NewSingleHostReverseProxy(u), byKey: map[string]int{}}, nil
}

func (c *ReserveCounter) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path == api.PathReserve {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		var req api.ReserveRequest
		if json.Unmarshal(body, &req) == nil {
			c.mu.Lock()
			c.byKey[req.Key]++
			c.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.proxy.ServeHTTP(rw, r)
}

// Reserves is how many reserve calls for key went through.
func (c *ReserveCounter) Reserves(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}
