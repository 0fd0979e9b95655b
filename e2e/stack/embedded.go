package stack

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// EmbeddedWarning is what a person must know before trusting the embedded
// store with anything.
const EmbeddedWarning = "the embedded store (miniredis, in the stack's own process) is for development only: " +
	"data is in memory and lost on exit, and it is not Redis — no persistence, no Cluster, no replication. " +
	RedisInstallHint + " or set IDEM_REDIS_ADDR for anything else"

// embedded is the dev-only store used when redis-server is not installed:
// miniredis serves the Redis protocol on a free loopback port from this
// process, so the control plane connects to it as to any Redis and runs the
// same Lua scripts (controlplane/store's tests pass against it). Keys expire
// by the wall clock (ClockTTL), as in Redis; miniredis's default is to
// freeze TTLs, which would keep every record forever.
type embedded struct {
	m *miniredis.Miniredis
}

func startEmbedded(s *Stack) (*embedded, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	answerRole(m)
	s.log.Warn("Redis is the embedded dev-only store", "addr", m.Addr(), "warning", EmbeddedWarning)
	return &embedded{m: m}, nil
}

func (e *embedded) addr() string { return e.m.Addr() }
func (e *embedded) url() string  { return "redis://" + e.m.Addr() }
func (e *embedded) kind() string {
	return "EMBEDDED DEV-ONLY STORE (miniredis) on " + e.m.Addr() + " — in memory, lost on exit, not Redis"
}
func (e *embedded) logPath() string { return "" }
func (e *embedded) stop()           { e.m.Close() }

// restart closes every connection and listens again on the same port; the
// data stays, as it would in a redis-server with its append-only file, but
// only because the process lives on.
func (e *embedded) restart(context.Context) error {
	e.m.Close()
	if err := e.m.Restart(); err != nil {
		return fmt.Errorf("restart embedded store on %s: %w", e.m.Addr(), err)
	}
	answerRole(e.m) // a restart starts a new server, without the hook
	return nil
}

// answerRole answers what miniredis does not know and the control plane's
// readiness, failover watcher and node report ask — INFO replication,
// ROLE, CLIENT INFO's laddr — as the embedded store is: one master without
// replicas (so a control plane in durable mode is never ready on it, as it
// should not be).
func answerRole(m *miniredis.Miniredis) {
	addr := m.Addr()
	m.Server().SetPreHook(func(c *server.Peer, cmd string, args ...string) bool {
		switch {
		case cmd == "CLIENT" && len(args) == 1 && strings.EqualFold(args[0], "info"):
			c.WriteBulk("id=0 laddr=" + addr + "\n")
		case cmd == "INFO" && len(args) == 1 && strings.EqualFold(args[0], "replication"):
			c.WriteBulk("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n")
		case cmd == "ROLE" && len(args) == 0:
			c.WriteLen(3)
			c.WriteBulk("master")
			c.WriteInt(0)
			c.WriteLen(0)
		default:
			return false
		}
		return true
	})
}
