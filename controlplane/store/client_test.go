package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idemgate/idemgate/controlplane/api"
	"github.com/redis/go-redis/v9"
)

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		want    Target
		wantErr string // substring of the error; "" means success
	}{
		{
			name: "standalone",
			url:  "redis://127.0.0.1:6380",
			want: Target{Mode: ModeStandalone, Addrs: []string{"127.0.0.1:6380"}},
		},
		{
			name: "standalone default port, db, credentials",
			url:  "redis://alice:s3cr%40t@redis.local/2",
			want: Target{Mode: ModeStandalone, Addrs: []string{"redis.local:6379"}, Username: "alice", Password: "s3cr@t", DB: 2},
		},
		{
			name: "password only with unencoded @ and /",
			url:  "redis://:p@ss/w@h:1",
			want: Target{Mode: ModeStandalone, Addrs: []string{"h:1"}, Password: "p@ss/w"},
		},
		{
			name: "tls",
			url:  "rediss://h:6390/0",
			want: Target{Mode: ModeStandalone, Addrs: []string{"h:6390"}, TLS: true},
		},
		{
			name: "ipv6",
			url:  "redis://[::1]:7000",
			want: Target{Mode: ModeStandalone, Addrs: []string{"[::1]:7000"}},
		},
		{
			name: "ipv6 default port",
			url:  "redis://[::1]",
			want: Target{Mode: ModeStandalone, Addrs: []string{"[::1]:6379"}},
		},
		{
			name: "cluster",
			url:  "redis-cluster://u:p@a:7000,b:7001,c",
			want: Target{Mode: ModeCluster, Addrs: []string{"a:7000", "b:7001", "c:6379"}, Username: "u", Password: "p"},
		},
		{
			name: "cluster one seed",
			url:  "redis-cluster://a:7000",
			want: Target{Mode: ModeCluster, Addrs: []string{"a:7000"}},
		},
		{
			name: "cluster tls",
			url:  "rediss-cluster://a:7000,b:7001/",
			want: Target{Mode: ModeCluster, Addrs: []string{"a:7000", "b:7001"}, TLS: true},
		},
		{
			name: "sentinel",
			url:  "redis-sentinel://:pw@s1:26379,s2/mymaster",
			want: Target{Mode: ModeSentinel, Addrs: []string{"s1:26379", "s2:26379"}, Password: "pw", MasterName: "mymaster"},
		},
		{
			name: "sentinel db and sentinel credentials",
			url:  "redis-sentinel://s1:5000/mymaster/3?sentinel_username=sen&sentinel_password=x%26y",
			want: Target{Mode: ModeSentinel, Addrs: []string{"s1:5000"}, MasterName: "mymaster", DB: 3, SentinelUsername: "sen", SentinelPassword: "x&y"},
		},
		{name: "no scheme", url: "127.0.0.1:6379", wantErr: "missing scheme"},
		{name: "unknown scheme", url: "http://h:1", wantErr: `unknown scheme "http"`},
		{name: "no host", url: "redis://", wantErr: "no host"},
		{name: "no host with credentials", url: "redis://u:p@/0", wantErr: "no host"},
		{name: "standalone with many hosts", url: "redis://a:1,b:2", wantErr: "use redis-cluster://"},
		{name: "bad port", url: "redis://h:port", wantErr: `port "port"`},
		{name: "port out of range", url: "redis://h:70000", wantErr: "1 to 65535"},
		{name: "empty host in list", url: "redis-cluster://a:1,,b:2", wantErr: "empty host"},
		{name: "bare ipv6", url: "redis://::1", wantErr: "brackets"},
		{name: "bad db", url: "redis://h/x", wantErr: `database "x"`},
		{name: "negative db", url: "redis://h/-1", wantErr: `database "-1"`},
		{name: "standalone long path", url: "redis://h/0/1", wantErr: "at most /db"},
		{name: "cluster with db", url: "redis-cluster://a:1/1", wantErr: "only database 0"},
		{name: "sentinel without master", url: "redis-sentinel://s:26379", wantErr: "master name"},
		{name: "sentinel long path", url: "redis-sentinel://s/m/1/2", wantErr: "MASTERNAME[/db]"},
		{name: "unknown query", url: "redis://h?dial_timeout=1s", wantErr: `unknown query parameter "dial_timeout"`},
		{name: "sentinel param outside sentinel", url: "redis://h?sentinel_password=x", wantErr: "unknown query parameter"},
		{name: "bad percent-encoding", url: "redis://u:%zz@h", wantErr: "password is not valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRedisURL(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRedisURL(%q) error = %v, want one containing %q", tt.url, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRedisURL(%q): %v", tt.url, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRedisURL(%q)\n got %+v\nwant %+v", tt.url, got, tt.want)
			}
		})
	}
}

func TestParseRedisURLNeverEchoesPassword(t *testing.T) {
	for _, u := range []string{
		"redis://u:hunter2@h:notaport",
		"redis-sentinel://u:hunter2@h:1",
		"redis://u:hunter2@h:1/x",
	} {
		_, err := ParseRedisURL(u)
		if err == nil {
			t.Fatalf("ParseRedisURL(%q) succeeded, want an error", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q reveals the password", err)
		}
	}
	tg, err := ParseRedisURL("redis://u:hunter2@h:1")
	if err != nil {
		t.Fatal(err)
	}
	if s := tg.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "<redacted>") {
		t.Errorf("Target.String() = %q, want the password redacted", s)
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		opt      ClientOptions
		wantType string
		wantErr  string
	}{
		{name: "standalone", url: "redis://127.0.0.1:1", wantType: "*redis.Client"},
		{name: "cluster one seed", url: "redis-cluster://127.0.0.1:1", wantType: "*redis.ClusterClient"},
		{name: "sentinel", url: "redis-sentinel://127.0.0.1:1/m", wantType: "*redis.Client"},
		{name: "bad url", url: "redis://", wantErr: "no host"},
		{name: "negative timeout", url: "redis://h:1", opt: ClientOptions{ReadTimeout: -1}, wantErr: "negative"},
		{name: "negative pool", url: "redis://h:1", opt: ClientOptions{PoolSize: -1}, wantErr: "negative"},
		{name: "negative pool timeout", url: "redis://h:1", opt: ClientOptions{PoolTimeout: -1}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.url, tt.opt)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewClient error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := reflect.TypeOf(c).String(); got != tt.wantType {
				t.Errorf("client type %s, want %s", got, tt.wantType)
			}
		})
	}
}

func TestClientOptionsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   ClientOptions
		want ClientOptions
	}{
		{
			name: "zero takes defaults",
			want: ClientOptions{DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, PoolTimeout: 100 * time.Millisecond},
		},
		{
			name: "given values stay",
			in:   ClientOptions{PoolSize: 7, DialTimeout: 2 * time.Second, PoolTimeout: 5 * time.Millisecond},
			want: ClientOptions{DialTimeout: 2 * time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, PoolSize: 7, PoolTimeout: 5 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// The options reach go-redis, whose own retries are off (it reads the
	// -1 given as "none" and keeps 0): the store retries and counts
	// (Options.MaxRetries).
	c, err := NewClient("redis://127.0.0.1:1", ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.(*redis.Client).Options()
	if o.DialTimeout != DefaultDialTimeout || o.ReadTimeout != DefaultReadTimeout || o.MaxRetries != 0 || !o.ContextTimeoutEnabled || o.DialerRetries != dialAttempts || o.PoolTimeout != DefaultPoolTimeout {
		t.Errorf("go-redis options dial=%v read=%v retries=%d ctxTimeout=%v dials=%d poolTimeout=%v", o.DialTimeout, o.ReadTimeout, o.MaxRetries, o.ContextTimeoutEnabled, o.DialerRetries, o.PoolTimeout)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opt     Options
		wantErr bool
	}{
		{name: "zero", opt: Options{}},
		{name: "custom", opt: Options{Prefix: "idem:v2", MaxStoredResponse: 10, DefaultLease: time.Second, DefaultTTL: time.Second}},
		{name: "brace in prefix", opt: Options{Prefix: "a{b"}, wantErr: true},
		{name: "closing brace in prefix", opt: Options{Prefix: "a}b"}, wantErr: true},
		{name: "control char in prefix", opt: Options{Prefix: "a\nb"}, wantErr: true},
		{name: "long prefix", opt: Options{Prefix: strings.Repeat("p", 65)}, wantErr: true},
		{name: "negative cap", opt: Options{MaxStoredResponse: -1}, wantErr: true},
		{name: "negative lease", opt: Options{DefaultLease: -time.Second}, wantErr: true},
		{name: "ttl over the maximum", opt: Options{DefaultTTL: api.MaxTTL + time.Millisecond}, wantErr: true},
		{name: "ttl shorter than lease", opt: Options{DefaultLease: time.Hour, DefaultTTL: time.Minute}, wantErr: true},
		{name: "durable", opt: Options{Durable: Durability{Replicas: 2, Timeout: 100 * time.Millisecond}}},
		{name: "durable fsync alone", opt: Options{Durable: Durability{Fsync: true}}},
		{name: "negative replicas", opt: Options{Durable: Durability{Replicas: -1}}, wantErr: true},
		{name: "negative durable timeout", opt: Options{Durable: Durability{Replicas: 1, Timeout: -time.Millisecond}}, wantErr: true},
		{name: "durable timeout under 1ms", opt: Options{Durable: Durability{Replicas: 1, Timeout: time.Microsecond}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opt.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("error %v does not match ErrInvalidOptions", err)
			}
		})
	}
}
