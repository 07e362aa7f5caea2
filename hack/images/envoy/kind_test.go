package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
)

var update = flag.Bool("update", false, "rewrite testdata/ from kind's templates")

// kindCase is a cluster whose load-balancer files kind would generate.
type kindCase struct {
	dir      string
	name     string // kind cluster name
	ipv6     bool
	backends map[string]string
}

var kindCases = []kindCase{
	{dir: "kind-ha", name: "kind", backends: map[string]string{
		"kind-control-plane":  "kind-control-plane:6443",
		"kind-control-plane2": "kind-control-plane2:6443",
		"kind-control-plane3": "kind-control-plane3:6443",
	}},
	{dir: "kind-ipv6", name: "v6", ipv6: true, backends: map[string]string{
		"v6-control-plane":  "v6-control-plane:6443",
		"v6-control-plane2": "v6-control-plane2:6443",
	}},
}

// TestTestdataIsKindOutput renders kind's own templates, read from its source
// in the module cache (the package is internal, so it cannot be imported),
// and checks that testdata/ holds exactly that output. Run with -update to
// regenerate after a kind upgrade.
func TestTestdataIsKindOutput(t *testing.T) {
	consts := kindTemplates(t)
	for _, kc := range kindCases {
		data := map[string]any{"ControlPlanePort": 6443, "BackendServers": kc.backends, "IPv6": kc.ipv6}
		files := map[string]string{
			"lds.yaml": render(t, consts["ProxyLDSConfigTemplate"], data),
			"cds.yaml": render(t, consts["ProxyCDSConfigTemplate"], data),
			// GenerateBootstrapCommand writes this with `echo -en`; the
			// template has no escapes, so the bytes are the Sprintf result.
			"envoy.yaml": fmt.Sprintf(consts["DynamicFilesystemConfigTemplate"],
				kc.name, kc.name+"-external-load-balancer",
				consts["ProxyConfigPathCDS"], consts["ProxyConfigPathLDS"]),
		}
		for name, want := range files {
			path := filepath.Join("testdata", kc.dir, name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Errorf("%s differs from kind's template output; run go test -run TestTestdataIsKindOutput -update\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		}
	}
}

// kindTemplates returns the string constants of kind's loadbalancer package.
func kindTemplates(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/kind").Output()
	if err != nil {
		t.Fatalf("go mod download sigs.k8s.io/kind: %v", err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download sigs.k8s.io/kind gave no directory: %v %s", err, out)
	}
	src := filepath.Join(mod.Dir, "pkg/cluster/internal/loadbalancer/config.go")
	f, err := parser.ParseFile(token.NewFileSet(), src, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					consts[name.Name], _ = strconv.Unquote(lit.Value)
				}
			}
		}
	}
	for _, name := range []string{"ProxyLDSConfigTemplate", "ProxyCDSConfigTemplate", "DynamicFilesystemConfigTemplate", "ProxyConfigPathCDS", "ProxyConfigPathLDS"} {
		if consts[name] == "" {
			t.Fatalf("kind %s: constant %s not found in %s", mod.Version, name, src)
		}
	}
	return consts
}

// render executes a kind template with the same helper kind registers.
func render(t *testing.T, text string, data any) string {
	t.Helper()
	funcs := template.FuncMap{"hostPort": func(addr string) (map[string]string, error) {
		host, port, err := net.SplitHostPort(addr)
		return map[string]string{"host": host, "port": port}, err
	}}
	var b strings.Builder
	if err := template.Must(template.New("").Funcs(funcs).Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
