// Package version reports what build of the plugin is running.
package version

import (
	"fmt"
	"runtime"
)

// Version is stamped at build time with -ldflags "-X .../internal/version.Version=...".
var Version = "dev"

// Info describes this build.
type Info struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this build's Info.
func Get() Info {
	return Info{
		Version:   Version,
		GoVersion: runtime.Version(),
		Platform:  fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH),
	}
}
