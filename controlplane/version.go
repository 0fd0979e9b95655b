package main

import (
	"runtime/debug"
	"strings"
)

// Set by the image build (-ldflags "-X main.version=… -X main.revision=…"),
// whose binaries are built with -buildvcs=false so that the same commit
// gives the same bytes whatever the state of the work tree.
var (
	version  string
	revision string
)

// versionLine is what --version prints: "controlplane VERSION (revision
// REV, GOVERSION)". The link-time values win; a plain `go build` in a
// clone falls back to what the toolchain stamped (the module version and
// vcs.revision, with "+dirty" when the tree had changes), and says
// "unknown" rather than nothing.
func versionLine(ldVersion, ldRevision string, info *debug.BuildInfo) string {
	v, rev, goVersion := ldVersion, ldRevision, "unknown Go"
	if info != nil {
		goVersion = info.GoVersion
		if v == "" && info.Main.Version != "" {
			v = info.Main.Version
		}
		if rev == "" {
			var modified bool
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" && modified {
				rev += "+dirty"
			}
		}
	}
	if v == "" {
		v = "unknown"
	}
	if rev == "" {
		rev = "unknown"
	}
	return strings.Join([]string{"controlplane", v, "(revision", rev + ",", goVersion + ")"}, " ")
}
