package policy

// The configuration as written. Pointers tell "left out" (default) from a
// zero value; schema_test.go keeps these json tags and schema.json in step.

type rawConfig struct {
	ControlPlane *rawControlPlane `json:"control_plane"`
	Routes       []rawRoute       `json:"routes"`
	EdgeSlots    *int64           `json:"edge_cache_slots"`
	MaxHeld      *int64           `json:"max_held_bytes"`
}

type rawControlPlane struct {
	Cluster        string  `json:"cluster"`
	Authority      string  `json:"authority"`
	Token          string  `json:"token"`
	TokenEnv       *string `json:"token_env"`
	InsecureNoAuth bool    `json:"insecure_no_auth"`
	Timeout        *string `json:"timeout"`
}

type rawRoute struct {
	Name            *string         `json:"name"`
	Match           *rawMatch       `json:"match"`
	KeyHeader       *string         `json:"key_header"`
	KeyFormat       *string         `json:"key_format"`
	Required        *bool           `json:"required"`
	MaxKeyLength    *int64          `json:"max_key_length"`
	Scope           *rawScope       `json:"scope"`
	Fingerprint     *rawFingerprint `json:"fingerprint"`
	MaxBodyBytes    *int64          `json:"max_body_bytes"`
	MaxStoredResp   *int64          `json:"max_stored_response_bytes"`
	EdgeCacheTTL    *string         `json:"edge_cache_ttl"`
	EdgeMaxEntry    *int64          `json:"edge_cache_max_entry_bytes"`
	TTL             *string         `json:"ttl"`
	Lease           *string         `json:"lease"`
	StoreStatuses   []string        `json:"store_statuses"`
	ReleaseStatuses []string        `json:"release_statuses"`
	IndetStatuses   []string        `json:"indeterminate_statuses"`
	NotExecuted     *string         `json:"not_executed_header"`
	AllowAnonymous  bool            `json:"allow_anonymous"`
	HostAliases     []rawHostAlias  `json:"host_aliases"`
	OnDuplicate     *string         `json:"on_duplicate"`
	OnInProgress    *string         `json:"on_in_progress"`
	WaitTimeout     *string         `json:"wait_timeout"`
	FailureMode     *string         `json:"failure_mode"`
	OnIndeterminate *string         `json:"on_indeterminate"`
	ReconcileTarget *string         `json:"reconcile_target"`
	AttemptHeader   *string         `json:"attempt_header"`
	ReplayHeaders   []string        `json:"replay_headers"`
	ReplaySetCookie bool            `json:"replay_set_cookie"`
	ReplayedHeader  *string         `json:"replay_header"`
}

type rawHostAlias struct {
	Host    string   `json:"host"`
	Aliases []string `json:"aliases"`
}

type rawMatch struct {
	Host      string   `json:"host"`
	Path      string   `json:"path"`
	Prefix    string   `json:"prefix"`
	Glob      string   `json:"glob"`
	RouteName *string  `json:"route_name"`
	Methods   []string `json:"methods"`
}

type rawScope struct {
	Headers    []string     `json:"headers"`
	Metadata   *rawMetadata `json:"metadata"`
	HMACKeyEnv *string      `json:"hmac_key_env"`
	HMACKey    *string      `json:"hmac_key"`
}

type rawMetadata struct {
	Filter string   `json:"filter"`
	Path   []string `json:"path"`
}

type rawFingerprint struct {
	Include []string `json:"include"`
	Exclude []string `json:"exclude"`
	Headers []string `json:"headers"`
}
