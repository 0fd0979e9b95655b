package main

import "testing"

func TestResponseOrigin(t *testing.T) {
	tests := []struct {
		details string
		want    origin
	}{
		{"", fromUpstream},
		{"via_upstream", fromUpstream},
		{"upstream_reset_before_response_started{connection_termination}", indeterminate},
		{"upstream_reset_before_response_started{remote_reset}", indeterminate},
		{"upstream_reset_before_response_started{local_reset}", indeterminate},
		{"upstream_response_timeout", indeterminate},
		{"upstream_per_try_timeout", indeterminate},
		{"upstream_reset_after_response_started{remote_reset}", indeterminate},
		{"stream_idle_timeout", indeterminate},
		{"something_new_in_envoy_1_40", indeterminate},
		{"upstream_reset_before_response_started{connection_failure}", notSent},
		{"upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_Connection_refused}", notSent},
		{"upstream_reset_before_response_started{overflow}", notSent},
		{"no_healthy_upstream", notSent},
		{"route_not_found", notSent},
		{"rbac_access_denied_matched_policy[none]", notSent},
		{"request_payload_too_large", notSent},
	}
	for _, tt := range tests {
		if got := responseOrigin(tt.details); got != tt.want {
			t.Errorf("responseOrigin(%q) = %d, want %d", tt.details, got, tt.want)
		}
	}
}
