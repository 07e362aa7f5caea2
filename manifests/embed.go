// Package manifests embeds the component templates, one file per component.
// Each is a Go text/template that reads as YAML; internal/render fills them in.
// Files named bootstrap-*.yaml are static pods for a fresh cluster's first
// minutes; every other file is applied through the API.
package manifests

import "embed"

// FS holds every template.
//
//go:embed *.yaml
var FS embed.FS
