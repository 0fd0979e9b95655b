package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/reconcile"
	"github.com/idemgate/idemgate/controlplane/seal"
	"github.com/idemgate/idemgate/controlplane/server"
	"github.com/idemgate/idemgate/controlplane/store"
)

const testToken = "0123456789abcdef0123456789abcdef"

func envMap(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	got, err := parseConfig(nil, envMap(envToken, testToken))
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		Listen:            "127.0.0.1:8081",
		RedisURL:          "redis://127.0.0.1:6379",
		Token:             testToken,
		Lease:             30 * time.Second,
		TTL:               24 * time.Hour,
		MaxStoredResponse: 1 << 20,
		MaxRequestBytes:   2<<20 + 64<<10, // 2,162,688
		RedisPrefix:       store.DefaultPrefix,
		OpTimeout:         time.Second,
		ReadyTimeout:      time.Second,
		ShutdownTimeout:   15 * time.Second,
		Redis: store.ClientOptions{
			DialTimeout:  store.DefaultDialTimeout,
			ReadTimeout:  store.DefaultReadTimeout,
			WriteTimeout: store.DefaultWriteTimeout,
			PoolTimeout:  store.DefaultPoolTimeout,
		},
		MaxInFlight:     server.DefaultMaxInFlight,
		RedisMaxRetries: store.DefaultMaxRetries,
		Durable:         store.Durability{Timeout: store.DefaultDurableTimeout},
		LogLevel:        slog.LevelInfo,
		LogFormat:       "json",
	}
	if got.Listen != want.Listen || got.RedisURL != want.RedisURL || got.Token != want.Token ||
		got.Lease != want.Lease || got.TTL != want.TTL || got.MaxStoredResponse != want.MaxStoredResponse ||
		got.MaxRequestBytes != want.MaxRequestBytes || got.RedisPrefix != want.RedisPrefix ||
		got.OpTimeout != want.OpTimeout || got.ReadyTimeout != want.ReadyTimeout ||
		got.ShutdownTimeout != want.ShutdownTimeout || got.Redis != want.Redis ||
		got.RedisMaxRetries != want.RedisMaxRetries || got.MaxInFlight != want.MaxInFlight || got.Durable != want.Durable || got.Durable.On() ||
		got.LogLevel != want.LogLevel || got.LogFormat != want.LogFormat ||
		got.AdminToken != "" || got.InsecureNoAuth || got.EncryptionKeys != nil {
		t.Errorf("parseConfig defaults:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseConfig(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	key2 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("o", 32)))
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(t *testing.T, c config)
	}{
		{
			name: "flags win over the environment",
			args: []string{"--listen", ":9999", "--lease", "5s", "--redis-url", "redis://flag:1"},
			env:  []string{envToken, testToken, envListen, "127.0.0.1:1", "IDEM_LEASE", "7s", envRedisURL, "redis://env:2"},
			check: func(t *testing.T, c config) {
				if c.Listen != ":9999" || c.Lease != 5*time.Second || c.RedisURL != "redis://flag:1" {
					t.Errorf("got listen %q lease %v redis %q", c.Listen, c.Lease, c.RedisURL)
				}
			},
		},
		{
			name: "environment fills what flags leave",
			env: []string{envToken, testToken, envListen, "0.0.0.0:8081", "IDEM_TTL", "1h", "IDEM_OP_TIMEOUT", "250ms",
				"IDEM_REDIS_POOL_SIZE", "32", "IDEM_REDIS_MAX_RETRIES", "-1", "IDEM_LOG_LEVEL", "debug", "IDEM_LOG_FORMAT", "text",
				"IDEM_MAX_STORED_RESPONSE", "1000", "IDEM_SHUTDOWN_TIMEOUT", "3s", "IDEM_REDIS_PREFIX", "tenant-a"},
			check: func(t *testing.T, c config) {
				if c.Listen != "0.0.0.0:8081" || c.TTL != time.Hour || c.OpTimeout != 250*time.Millisecond ||
					c.Redis.PoolSize != 32 || c.RedisMaxRetries != -1 || c.storeOptions().MaxRetries != -1 || c.LogLevel != slog.LevelDebug ||
					c.LogFormat != "text" || c.MaxStoredResponse != 1000 || c.ShutdownTimeout != 3*time.Second ||
					c.RedisPrefix != "tenant-a" {
					t.Errorf("got %+v", c)
				}
				if want := int64(2*1000 + 64<<10); c.MaxRequestBytes != want {
					t.Errorf("MaxRequestBytes = %d, want %d (derived from the cap)", c.MaxRequestBytes, want)
				}
			},
		},
		{
			name: "fence TTL from the environment reaches the store",
			env:  []string{envToken, testToken, "IDEM_FENCE_TTL", "48h"},
			check: func(t *testing.T, c config) {
				if c.FenceTTL != 48*time.Hour || c.storeOptions().FenceTTL != 48*time.Hour {
					t.Errorf("FenceTTL %v, store's %v, want 48h", c.FenceTTL, c.storeOptions().FenceTTL)
				}
			},
		},
		{
			name: "fence TTL unset: the store's default (a whole reservation)",
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if c.FenceTTL != 0 || c.storeOptions().FenceTTL != 0 {
					t.Errorf("FenceTTL %v, store's %v, want 0 (the store's default)", c.FenceTTL, c.storeOptions().FenceTTL)
				}
			},
		},
		{
			name: "IDEM_REDIS_ADDR is read as redis://host:port",
			env:  []string{envToken, testToken, envRedisAddr, "10.0.0.5:6380"},
			check: func(t *testing.T, c config) {
				if c.RedisURL != "redis://10.0.0.5:6380" {
					t.Errorf("RedisURL = %q", c.RedisURL)
				}
			},
		},
		{
			name: "IDEM_REDIS_URL wins over IDEM_REDIS_ADDR",
			env:  []string{envToken, testToken, envRedisAddr, "10.0.0.5:6380", envRedisURL, "redis-cluster://a:1,b:2"},
			check: func(t *testing.T, c config) {
				if c.RedisURL != "redis-cluster://a:1,b:2" {
					t.Errorf("RedisURL = %q", c.RedisURL)
				}
			},
		},
		{
			name: "sentinel URL",
			args: []string{"--redis-url", "redis-sentinel://s1:26379,s2:26379/mymaster"},
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if c.RedisURL != "redis-sentinel://s1:26379,s2:26379/mymaster" {
					t.Errorf("RedisURL = %q", c.RedisURL)
				}
			},
		},
		{
			name: "insecure mode needs no token",
			args: []string{"--insecure-no-auth"},
			check: func(t *testing.T, c config) {
				if !c.InsecureNoAuth || c.Token != "" {
					t.Errorf("got insecure %v token %q", c.InsecureNoAuth, c.Token)
				}
			},
		},
		{
			name: "separate admin token",
			env:  []string{envToken, testToken, envAdminToken, "admin-0123456789abcdef"},
			check: func(t *testing.T, c config) {
				if c.AdminToken != "admin-0123456789abcdef" {
					t.Errorf("AdminToken = %q", c.AdminToken)
				}
			},
		},
		{
			name: "fingerprint key and its previous key, from a named variable",
			args: []string{"--fingerprint-key-env", "MY_FP_KEY"},
			env:  []string{envToken, testToken, "MY_FP_KEY", key, "MY_FP_KEY_PREVIOUS", key2, envFingerprintKey, "ignored"},
			check: func(t *testing.T, c config) {
				o := c.storeOptions()
				if string(o.FingerprintKey) != strings.Repeat("k", 32) || len(o.PreviousFingerprintKeys) != 1 {
					t.Fatalf("fingerprint keys %q %q", o.FingerprintKey, o.PreviousFingerprintKeys)
				}
			},
		},
		{
			name: "no fingerprint key: unkeyed",
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if o := c.storeOptions(); o.FingerprintKey != nil || o.PreviousFingerprintKeys != nil {
					t.Fatalf("fingerprint keys %q %q", o.FingerprintKey, o.PreviousFingerprintKeys)
				}
			},
		},
		{
			name: "encryption key: the store's cap grows by the seal overhead",
			env:  []string{envToken, testToken, envEncryptionKey, key, envEncryptionPrev, key2},
			check: func(t *testing.T, c config) {
				if len(c.EncryptionKeys) != 2 || string(c.EncryptionKeys[0]) != strings.Repeat("k", 32) {
					t.Fatalf("EncryptionKeys = %q", c.EncryptionKeys)
				}
				if got, want := c.storeCap(), 1<<20+seal.Overhead; got != want {
					t.Errorf("storeCap = %d, want %d", got, want)
				}
				if got, want := c.MaxRequestBytes, int64(2*(1<<20+seal.Overhead)+64<<10); got != want {
					t.Errorf("MaxRequestBytes = %d, want %d", got, want)
				}
			},
		},
		{
			name: "durable mode from the environment reaches the store",
			env:  []string{envToken, testToken, "IDEM_DURABLE_REPLICAS", "2", "IDEM_DURABLE_TIMEOUT", "100ms", "IDEM_DURABLE_FSYNC", "true"},
			check: func(t *testing.T, c config) {
				want := store.Durability{Replicas: 2, Timeout: 100 * time.Millisecond, Fsync: true}
				if c.Durable != want || c.storeOptions().Durable != want {
					t.Errorf("Durable %+v, store's %+v, want %+v", c.Durable, c.storeOptions().Durable, want)
				}
			},
		},
		{
			name: "durable flags",
			args: []string{"--durable-replicas", "1", "--durable-timeout", "400ms", "--op-timeout", "2s", "--redis-read-timeout", "1s"},
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if c.Durable != (store.Durability{Replicas: 1, Timeout: 400 * time.Millisecond}) {
					t.Errorf("Durable %+v", c.Durable)
				}
			},
		},
		{
			name: "admission bound and pool wait from the environment",
			env:  []string{envToken, testToken, "IDEM_MAX_INFLIGHT", "200", "IDEM_REDIS_POOL_TIMEOUT", "20ms"},
			check: func(t *testing.T, c config) {
				if c.MaxInFlight != 200 || c.Redis.PoolTimeout != 20*time.Millisecond {
					t.Errorf("MaxInFlight %d, PoolTimeout %v; want 200, 20ms", c.MaxInFlight, c.Redis.PoolTimeout)
				}
			},
		},
		{
			name: "no admission bound",
			args: []string{"--max-inflight", "-1"},
			env:  []string{envToken, testToken, "IDEM_MAX_INFLIGHT", "9"},
			check: func(t *testing.T, c config) {
				if c.MaxInFlight != -1 {
					t.Errorf("MaxInFlight %d, want -1 (the flag wins)", c.MaxInFlight)
				}
			},
		},
		{
			name: "smallest admission bound",
			args: []string{"--max-inflight", "2"},
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if c.MaxInFlight != 2 {
					t.Errorf("MaxInFlight %d, want 2", c.MaxInFlight)
				}
			},
		},
		{
			name: "reconcile off by default, with the loop's defaults",
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				r := c.Reconcile
				if r.Targets != nil || r.Delay != time.Second || r.Interval != 500*time.Millisecond || r.Concurrency != 8 ||
					r.Timeout != 5*time.Second || r.MaxBackoff != time.Minute || c.storeOptions().ReconcileDelay != time.Second {
					t.Errorf("Reconcile %+v, store delay %v", r, c.storeOptions().ReconcileDelay)
				}
			},
		},
		{
			name: "reconcile targets from flags, credentials from the environment",
			args: []string{"--reconcile-url", "http://pay/idem/{key}", "--reconcile-url", "orders-eu=https://o/x?a={attempt}",
				"--reconcile-delay", "250ms", "--reconcile-interval", "100ms", "--reconcile-concurrency", "3",
				"--reconcile-timeout", "2s", "--reconcile-max-backoff", "10s"},
			env: []string{envToken, testToken, "IDEMGATE_RECONCILE_TOKEN", "svc-default", "IDEMGATE_RECONCILE_TOKEN_ORDERS_EU", "svc-orders",
				envReconcileURL, "http://ignored/{key}"},
			check: func(t *testing.T, c config) {
				r := c.Reconcile
				want := []reconcile.Target{
					{Name: "default", Template: "http://pay/idem/{key}", Credential: "svc-default"},
					{Name: "orders-eu", Template: "https://o/x?a={attempt}", Credential: "svc-orders"},
				}
				if len(r.Targets) != 2 || r.Targets[0] != want[0] || r.Targets[1] != want[1] {
					t.Errorf("Targets %+v, want %+v (the flags win over IDEM_RECONCILE_URL)", r.Targets, want)
				}
				if r.Delay != 250*time.Millisecond || c.storeOptions().ReconcileDelay != 250*time.Millisecond || r.Interval != 100*time.Millisecond ||
					r.Concurrency != 3 || r.Timeout != 2*time.Second || r.MaxBackoff != 10*time.Second {
					t.Errorf("Reconcile %+v", r)
				}
			},
		},
		{
			name: "reconcile targets from the environment, separated by spaces",
			env:  []string{envToken, testToken, envReconcileURL, "http://pay/{key}  b=http://b/{attempt}", "IDEM_RECONCILE_CONCURRENCY", "16"},
			check: func(t *testing.T, c config) {
				r := c.Reconcile
				if len(r.Targets) != 2 || r.Targets[0].Name != "default" || r.Targets[1].Name != "b" || r.Concurrency != 16 {
					t.Errorf("Reconcile %+v", r)
				}
			},
		},
		{
			name: "explicit request limit at the minimum",
			args: []string{"--max-stored-response", "3000", "--max-request-bytes", "20384"}, // 4000 + 16384
			env:  []string{envToken, testToken},
			check: func(t *testing.T, c config) {
				if c.MaxRequestBytes != 20384 {
					t.Errorf("MaxRequestBytes = %d", c.MaxRequestBytes)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, envMap(tt.env...))
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     []string
		wantErr string
		secret  string // must not appear in the error
	}{
		{"no token", nil, nil, "no token: set IDEM_CONTROLPLANE_TOKEN", ""},
		{"insecure and a token", []string{"--insecure-no-auth"}, []string{envToken, testToken}, "choose one", testToken},
		{"short token", []string{"--token", "short"}, nil, "want at least 16", "short"},
		{"token with a space", nil, []string{envToken, "0123456789 abcdef0"}, "characters a bearer token cannot carry", "0123456789 abcdef0"},
		{"admin token equals token", nil, []string{envToken, testToken, envAdminToken, testToken}, "admin token equals the token", testToken},
		{"short admin token", nil, []string{envToken, testToken, envAdminToken, "adm"}, "admin token is 3 characters", ""},
		{"bad duration in env", nil, []string{envToken, testToken, "IDEM_LEASE", "thirty"}, `IDEM_LEASE="thirty"`, ""},
		{"bad int in env", nil, []string{envToken, testToken, "IDEM_MAX_STORED_RESPONSE", "1MiB"}, "IDEM_MAX_STORED_RESPONSE", ""},
		{"zero lease", []string{"--lease", "0s"}, []string{envToken, testToken}, "--lease is 0s; want a positive duration", ""},
		{"negative op timeout", []string{"--op-timeout", "-1s"}, []string{envToken, testToken}, "--op-timeout", ""},
		{"sub-millisecond lease", []string{"--lease", "1500us"}, []string{envToken, testToken}, "whole milliseconds", ""},
		{"negative fence ttl", []string{"--fence-ttl", "-1s"}, []string{envToken, testToken}, "--fence-ttl is -1s", ""},
		{"fence ttl too long", []string{"--fence-ttl", "20000h"}, []string{envToken, testToken}, "--fence-ttl", ""},
		{"lease longer than ttl", []string{"--lease", "2h", "--ttl", "1h"}, []string{envToken, testToken}, "longer than --ttl", ""},
		{"unknown redis scheme", []string{"--redis-url", "http://x:1"}, []string{envToken, testToken}, "--redis-url: redis URL: unknown scheme", ""},
		{"redis password not echoed", []string{"--redis-url", "redis://u:hunter2@h:1/x/y"}, []string{envToken, testToken}, "--redis-url", "hunter2"},
		{"bad IDEM_REDIS_ADDR", nil, []string{envToken, testToken, envRedisAddr, "nohostport"}, "IDEM_REDIS_ADDR", ""},
		{"bad listen", []string{"--listen", "8081"}, []string{envToken, testToken}, "--listen \"8081\": want host:port", ""},
		{"bad listen port", []string{"--listen", "127.0.0.1:http2"}, []string{envToken, testToken}, "port \"http2\"", ""},
		{"request limit too small", []string{"--max-request-bytes", "1000000"}, []string{envToken, testToken}, "want at least 1414488", ""},
		{"zero cap", []string{"--max-stored-response", "0"}, []string{envToken, testToken}, "--max-stored-response is 0", ""},
		{"negative pool", []string{"--redis-pool-size", "-2"}, []string{envToken, testToken}, "--redis-pool-size", ""},
		{"max inflight of one", []string{"--max-inflight", "1"}, []string{envToken, testToken}, "--max-inflight is 1; want 2 or more (a quarter of the slots, at least one, is kept for complete, release and abandon), 0 for the default 64, or -1 for no bound", ""},
		{"max inflight below -1", []string{"--max-inflight", "-5"}, []string{envToken, testToken}, "--max-inflight is -5; want 2 or more", ""},
		{"max inflight not a number", nil, []string{envToken, testToken, "IDEM_MAX_INFLIGHT", "lots"}, `IDEM_MAX_INFLIGHT="lots"`, ""},
		{"zero pool timeout", []string{"--redis-pool-timeout", "0s"}, []string{envToken, testToken}, "--redis-pool-timeout is 0s; want a positive duration", ""},
		{"negative pool timeout", nil, []string{envToken, testToken, "IDEM_REDIS_POOL_TIMEOUT", "-5ms"}, "--redis-pool-timeout is -5ms", ""},
		{"retries below -1", []string{"--redis-max-retries", "-2"}, []string{envToken, testToken}, "--redis-max-retries", ""},
		{"negative durable replicas", []string{"--durable-replicas", "-1"}, []string{envToken, testToken}, "--durable-replicas is -1", ""},
		{"durable timeout not below op timeout", []string{"--durable-replicas", "1", "--durable-timeout", "1s"}, []string{envToken, testToken}, "--durable-timeout 1s must be less than --op-timeout 1s", ""},
		{"durable timeout not below read timeout", []string{"--durable-replicas", "1", "--durable-timeout", "600ms"}, []string{envToken, testToken}, "must be less than --redis-read-timeout 500ms", ""},
		{"durable timeout sub-millisecond", []string{"--durable-replicas", "1", "--durable-timeout", "1500us"}, []string{envToken, testToken}, "want whole milliseconds", ""},
		{"durable timeout zero", []string{"--durable-fsync", "--durable-timeout", "0s"}, []string{envToken, testToken}, "--durable-timeout is 0s", ""},
		// Durable mode off: a negative timeout is still a typo to name,
		// not a store error blamed on --redis-prefix, --lease or --ttl.
		{"negative durable timeout, durable off", []string{"--durable-timeout", "-1s"}, []string{envToken, testToken}, "--durable-timeout is -1s", ""},
		{"prefix with a brace", []string{"--redis-prefix", "a{b"}, []string{envToken, testToken}, "--redis-prefix", ""},
		{"encryption key of 16 bytes", nil, []string{envToken, testToken, envEncryptionKey, "AAAAAAAAAAAAAAAAAAAAAA=="}, "IDEM_ENCRYPTION_KEY: decodes to 16 bytes, want 32", "AAAAAAAAAAAAAAAAAAAAAA=="},
		{"encryption key not base64", nil, []string{envToken, testToken, envEncryptionKey, "secret!secret!"}, "IDEM_ENCRYPTION_KEY: not base64", "secret!secret!"},
		{"fingerprint key of 16 bytes", nil, []string{envToken, testToken, envFingerprintKey, "AAAAAAAAAAAAAAAAAAAAAA=="}, "IDEM_FINGERPRINT_KEY (the fingerprint key): decodes to 16 bytes, want 32", "AAAAAAAAAAAAAAAAAAAAAA=="},
		{"fingerprint key not base64", []string{"--fingerprint-key-env", "FP_SECRET"}, []string{envToken, testToken, "FP_SECRET", "secret!secret!"}, "FP_SECRET (the fingerprint key): not base64", "secret!secret!"},
		{"previous fingerprint key alone", nil, []string{envToken, testToken, envFingerprintKey + "_PREVIOUS", base64.StdEncoding.EncodeToString(make([]byte, 32))}, "IDEM_FINGERPRINT_KEY is not", ""},
		{"empty fingerprint key env name", []string{"--fingerprint-key-env", ""}, []string{envToken, testToken}, "--fingerprint-key-env is empty", ""},
		{"previous key alone", nil, []string{envToken, testToken, envEncryptionPrev, base64.StdEncoding.EncodeToString(make([]byte, 32))}, "IDEM_ENCRYPTION_KEY is not", ""},
		{"bad log level", []string{"--log-level", "loud"}, []string{envToken, testToken}, "--log-level \"loud\"", ""},
		{"bad log format", []string{"--log-format", "xml"}, []string{envToken, testToken}, "--log-format \"xml\"", ""},
		{"reconcile URL not http", []string{"--reconcile-url", "ftp://x/{key}"}, []string{envToken, testToken}, `--reconcile-url "ftp://x/{key}": the URL template is not an absolute http or https URL`, ""},
		{"reconcile URL without key or attempt", []string{"--reconcile-url", "http://x/{scope}"}, []string{envToken, testToken}, "names neither {key} nor {attempt}", ""},
		{"reconcile URL with an unknown placeholder", nil, []string{envToken, testToken, envReconcileURL, "http://x/{id}"}, "not one of the placeholders {key}, {attempt}, {scope}", ""},
		{"reconcile URL with a password", []string{"--reconcile-url", "http://u:hunter2@x/{key}"}, []string{envToken, testToken}, `--reconcile-url of the target "default": the URL template carries user information`, "hunter2"},
		{"reconcile target twice", []string{"--reconcile-url", "p=http://x/{key}", "--reconcile-url", "p=http://y/{key}"}, []string{envToken, testToken}, `the target "p" is given twice`, ""},
		{"reconcile target name", []string{"--reconcile-url", "pay.eu=http://x/{key}"}, []string{envToken, testToken}, "byte outside [A-Za-z0-9_-]", ""},
		{"reconcile concurrency zero", []string{"--reconcile-concurrency", "0"}, []string{envToken, testToken}, "--reconcile-concurrency is 0; want 1 to 1024", ""},
		{"reconcile concurrency huge", nil, []string{envToken, testToken, "IDEM_RECONCILE_CONCURRENCY", "5000"}, "--reconcile-concurrency is 5000", ""},
		{"reconcile timeout zero", []string{"--reconcile-timeout", "0s"}, []string{envToken, testToken}, "--reconcile-timeout is 0s; want a positive duration", ""},
		{"reconcile interval negative", []string{"--reconcile-interval", "-1s"}, []string{envToken, testToken}, "--reconcile-interval is -1s", ""},
		{"reconcile delay sub-millisecond", []string{"--reconcile-delay", "1500us"}, []string{envToken, testToken}, "--reconcile-delay is 1.5ms; Redis keeps it in milliseconds", ""},
		{"reconcile max backoff too short", []string{"--reconcile-max-backoff", "50ms"}, []string{envToken, testToken}, "--reconcile-max-backoff is 50ms; want at least 100ms", ""},
		{"positional argument", []string{"serve"}, []string{envToken, testToken}, `unexpected argument "serve"`, ""},
		{"unknown flag", []string{"--port", "1"}, []string{envToken, testToken}, "flag provided but not defined: -port", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envMap(tt.env...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseConfig = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q echoes the secret %q", err, tt.secret)
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		if _, err := parseConfig([]string{arg}, envMap()); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseConfig(%s) = %v, want flag.ErrHelp", arg, err)
		}
	}
}

func TestIsToken68(t *testing.T) {
	for in, want := range map[string]bool{
		"abcDEF012-._~+/": true, "abc==": true, "=abc": false, "a=b": false,
		"a b": false, "a\tb": false, "é": false, "": false, `a"b`: false,
	} {
		if got := isToken68(in); got != want {
			t.Errorf("isToken68(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestValidateConfig holds validation apart from reading: each case
// changes one setting of the defaults readConfig gives and expects
// validateConfig's error for it, naming the setting and never a secret.
func TestValidateConfig(t *testing.T) {
	key32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	const short = "AAAAAAAAAAAAAAAAAAAAAA==" // 16 bytes
	tests := []struct {
		name    string
		mod     func(r *rawConfig)
		wantErr string
	}{
		{"log level", func(r *rawConfig) { r.LogLevel = "loud" }, `--log-level "loud": want debug, info, warn or error`},
		{"log format", func(r *rawConfig) { r.LogFormat = "xml" }, `--log-format "xml": want json or text`},
		{"listen", func(r *rawConfig) { r.Listen = "8081" }, `--listen "8081": want host:port`},
		{"redis URL", func(r *rawConfig) { r.RedisURL = "http://x:1" }, "--redis-url: redis URL: unknown scheme"},
		{"no token", func(r *rawConfig) { r.Token = "" }, "no token: set IDEM_CONTROLPLANE_TOKEN"},
		{"short admin token", func(r *rawConfig) { r.AdminToken = "adm" }, "the admin token is 3 characters; want at least 16"},
		{"zero lease", func(r *rawConfig) { r.Lease = 0 }, "--lease is 0s; want a positive duration"},
		{"negative pool timeout", func(r *rawConfig) { r.Redis.PoolTimeout = -time.Millisecond }, "--redis-pool-timeout is -1ms"},
		{"sub-millisecond ttl", func(r *rawConfig) { r.TTL = time.Hour + time.Microsecond }, "--lease and --ttl are kept in milliseconds"},
		{"fence ttl one millisecond over", func(r *rawConfig) { r.FenceTTL = 2*8784*time.Hour + time.Millisecond }, "--fence-ttl is 17568h0m0.001s; want 0 (the default) or from 1ms to 17568h0m0s"},
		{"fence ttl sub-millisecond", func(r *rawConfig) { r.FenceTTL = time.Microsecond }, "--fence-ttl is 1µs"},
		{"lease over ttl", func(r *rawConfig) { r.Lease, r.TTL = 2*time.Hour, time.Hour }, "--lease 2h0m0s is longer than --ttl 1h0m0s"},
		{"negative pool", func(r *rawConfig) { r.Redis.PoolSize = -1 }, "--redis-pool-size is -1"},
		{"max inflight of one", func(r *rawConfig) { r.MaxInFlight = 1 }, "--max-inflight is 1; want 2 or more"},
		{"retries below -1", func(r *rawConfig) { r.RedisMaxRetries = -2 }, "--redis-max-retries is -2"},
		{"durable timeout not below op timeout", func(r *rawConfig) { r.Durable.Replicas, r.Durable.Timeout = 1, r.OpTimeout }, "must be less than --op-timeout"},
		{"zero cap", func(r *rawConfig) { r.MaxStoredResponse = 0 }, "--max-stored-response is 0"},
		{"encryption key short", func(r *rawConfig) { r.Env[envEncryptionKey] = short }, "IDEM_ENCRYPTION_KEY: decodes to 16 bytes, want 32"},
		{"previous encryption key short", func(r *rawConfig) { r.Env[envEncryptionKey], r.Env[envEncryptionPrev] = key32, short }, "IDEM_ENCRYPTION_KEY_PREVIOUS: decodes to 16 bytes"},
		{"previous encryption key alone", func(r *rawConfig) { r.Env[envEncryptionPrev] = key32 }, "IDEM_ENCRYPTION_KEY_PREVIOUS is set but IDEM_ENCRYPTION_KEY is not"},
		{"fingerprint key env empty", func(r *rawConfig) { r.FingerprintKeyEnv = "" }, "--fingerprint-key-env is empty"},
		{"fingerprint key short", func(r *rawConfig) { r.Env[envFingerprintKey] = short }, "IDEM_FINGERPRINT_KEY (the fingerprint key): decodes to 16 bytes"},
		{"previous fingerprint key alone", func(r *rawConfig) { r.Env[envFingerprintKey+"_PREVIOUS"] = key32 }, "IDEM_FINGERPRINT_KEY_PREVIOUS is set but IDEM_FINGERPRINT_KEY is not"},
		{"redis prefix", func(r *rawConfig) { r.RedisPrefix = "a{b" }, "--redis-prefix, --lease or --ttl"},
		{"reconcile concurrency", func(r *rawConfig) { r.Reconcile.Concurrency = 0 }, "--reconcile-concurrency is 0; want 1 to 1024"},
		{"reconcile URL", func(r *rawConfig) { r.ReconcileURLs = stringList{"ftp://x/{key}"} }, "the URL template is not an absolute http or https URL"},
		{"request limit one byte under the minimum", func(r *rawConfig) { r.MaxRequestBytes = server.MinRequestBytes(r.MaxStoredResponse) - 1 }, "--max-request-bytes 1414487 cannot carry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := readConfig(nil, envMap(envToken, testToken))
			if err != nil {
				t.Fatal(err)
			}
			tt.mod(&raw)
			_, err = validateConfig(raw)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validateConfig = %v, want error containing %q", err, tt.wantErr)
			}
			for _, v := range raw.Env {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q shows the value %q of an environment variable", err, v)
				}
			}
		})
	}
}

// TestReadConfigEnv: readConfig takes from the environment what
// validation needs beside the flags (keys, the credential of each
// reconcile target), and validateConfig reads nothing else: the same raw
// configuration validates the same whatever the environment is then.
func TestReadConfigEnv(t *testing.T) {
	key32 := base64.StdEncoding.EncodeToString(make([]byte, 32))
	raw, err := readConfig([]string{"--reconcile-url", "orders=http://o/{key}"}, envMap(
		envToken, testToken, envEncryptionKey, key32, envFingerprintKey, key32,
		reconcile.CredentialEnv("orders"), "svc-orders", "UNRELATED", "x"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{envEncryptionKey: key32, envFingerprintKey: key32, reconcile.CredentialEnv("orders"): "svc-orders"}
	if len(raw.Env) != len(want) {
		t.Errorf("raw.Env = %v, want %v", raw.Env, want)
	}
	for k, v := range want {
		if raw.Env[k] != v {
			t.Errorf("raw.Env[%s] = %q, want %q", k, raw.Env[k], v)
		}
	}
	c, err := validateConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EncryptionKeys) != 1 || len(c.FingerprintKeys) != 1 || len(c.Reconcile.Targets) != 1 || c.Reconcile.Targets[0].Credential != "svc-orders" {
		t.Errorf("validated: %d encryption keys, %d fingerprint keys, targets %+v; want 1, 1 and orders with its credential",
			len(c.EncryptionKeys), len(c.FingerprintKeys), c.Reconcile.Targets)
	}
	if raw.MaxInFlight != 0 || raw.MaxRequestBytes != 0 {
		t.Errorf("validateConfig changed its input: max-inflight %d, max-request-bytes %d", raw.MaxInFlight, raw.MaxRequestBytes)
	}
}
