// Package version says which raftkv this binary is: the release it was
// built from (set with -ldflags "-X github.com/raftkv/raftkv/internal/version.Release=v1.2.3",
// or the module version when installed with go install), and the VCS
// revision when the build recorded one.
package version

import (
	"runtime/debug"
	"sync"
)

// Release is set at build time; empty means a development build.
var Release = ""

var once sync.Once
var version string

// String is the version to show: Release, or the module's version, or
// "dev", followed by the VCS revision if known.
func String() string {
	once.Do(func() {
		version = Release
		info, ok := debug.ReadBuildInfo()
		if version == "" && ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
			version = info.Main.Version
		}
		if version == "" {
			version = "dev"
		}
		if ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					version += "+" + s.Value[:12]
				}
			}
		}
	})
	return version
}
