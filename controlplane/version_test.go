package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/idemgate/idemgate", Version: "v0.3.1-0.20261201000000-0123456789ab"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name         string
		ldVer, ldRev string
		info         *debug.BuildInfo
		want         string
	}{
		{"link-time values win", "v1.2.3", "deadbeef", stamped, "controlplane v1.2.3 (revision deadbeef, go1.26.8)"},
		{"toolchain stamp, dirty tree", "", "", stamped, "controlplane v0.3.1-0.20261201000000-0123456789ab (revision 0123456789abcdef+dirty, go1.26.8)"},
		{"version only from the link", "v1.2.3", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "controlplane v1.2.3 (revision unknown, go1.26.8)"},
		{"no build info", "", "", nil, "controlplane unknown (revision unknown, unknown Go)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.ldVer, tc.ldRev, tc.info); got != tc.want {
				t.Errorf("versionLine = %q, want %q", got, tc.want)
			}
		})
	}
}

// --version answers on stdout and exits 0 before the configuration is
// validated: a container started with it has no token.
func TestRunVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--version"}, envMap(), &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("run --version = %d, want %d; stderr: %s", code, exitOK, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "controlplane ") || !strings.Contains(stdout.String(), "(revision ") {
		t.Errorf("stdout = %q, want the version line", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}
}
