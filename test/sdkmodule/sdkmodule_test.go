// Package sdkmodule proves the Go SDK is installable and light: examples/sdk, a module of its
// own, builds from its committed go.mod against this checkout (a replace line the only local
// hint), its module graph holds none of the tools' dependencies, a fresh module can go get the
// SDK, and the program it builds talks to a real server.
package sdkmodule

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// toolModules are modules only the benchmark and plotting tools need (they live in modules of
// their own): a program built on the SDK never sees them, not even in its module graph.
var toolModules = []string{"gonum.org/", "github.com/redis/go-redis"}

// serverModules are required by the server, which shares the SDK's module: they are in a user's
// module graph (go.mod files only, never downloaded as code) but no SDK program links them. The
// SDK links the OpenTelemetry API (go.opentelemetry.io/otel, .../otel/trace) and takes a
// TracerProvider from its user; the SDK of OpenTelemetry and the OTLP exporter are the server's.
var serverModules = []string{"github.com/redis/rueidis", "github.com/cloudwego/hertz", "github.com/anishathalye/porcupine",
	"go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters/", "go.opentelemetry.io/proto/otlp", "google.golang.org/grpc"}

// etcdModules are linked only by programs that import pkg/kvclient/etcdresolver (etcd's client
// and gRPC beneath it): one that finds its servers statically or by DNS links none of them.
var etcdModules = []string{"go.etcd.io/", "google.golang.org/grpc"}

// linkedOnlyByKitex is the one code-generation module a Kitex client links: kitex/client imports
// kitex/pkg/generic, which parses IDL with thriftgo. It comes with Kitex, not with putallkv.
const linkedOnlyByKitex = "github.com/cloudwego/thriftgo"

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// goCmd runs the go command in dir outside any workspace and without inherited -mod flags, as a
// user's shell would, and returns its standard output.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return string(out)
}

func TestExampleModuleIsLight(t *testing.T) {
	dir := filepath.Join(root(t), "examples", "sdk")
	goCmd(t, dir, "mod", "tidy", "-diff")
	for _, line := range strings.Split(goCmd(t, dir, "mod", "graph"), "\n") {
		for _, m := range toolModules {
			if strings.Contains(line, m) {
				t.Errorf("module graph reaches a tool dependency: %s", line)
			}
		}
	}
	pkgs := goCmd(t, dir, "list", "-mod=readonly", "-deps", ".")
	linkedNever := slices.Concat([]string{"github.com/putallkv/putallkv/cmd/", "github.com/putallkv/putallkv/internal/"},
		toolModules, serverModules, etcdModules)
	for _, m := range linkedNever {
		if strings.Contains(pkgs, "\n"+m) {
			t.Errorf("the example links a package of %s", m)
		}
	}
	// thriftgo is linked only because Kitex's client links it.
	why := goCmd(t, dir, "mod", "why", "-m", linkedOnlyByKitex)
	if !strings.Contains(why, "github.com/cloudwego/kitex/client") {
		t.Errorf("%s is linked other than through kitex/client:\n%s", linkedOnlyByKitex, why)
	}
}

func TestFreshModuleGetsTheSDKAndCallsAServer(t *testing.T) {
	srv := testserver.Start(t, testserver.Config(t, nil), nil)
	r := root(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(r, "examples", "sdk", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, "mod", "init", "example.com/fresh")
	goCmd(t, dir, "mod", "edit", "-replace", "github.com/putallkv/putallkv="+r)
	goCmd(t, dir, "get", "github.com/putallkv/putallkv@v0.0.0")
	goCmd(t, dir, "mod", "tidy")
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(toolModules, serverModules...) {
		if bytes.Contains(mod, []byte(m)) {
			t.Errorf("go.mod of a program using the SDK requires %s:\n%s", m, mod)
		}
	}
	bin := filepath.Join(dir, "sdk")
	goCmd(t, dir, "build", "-o", bin, ".")

	out, err := exec.Command(bin, "-addr", srv.RPCAddr(), "-prefix", "fresh/").CombinedOutput()
	if err != nil {
		t.Fatalf("example: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`^revision (\d+)\nfresh/a=1 version (\d+)\nfresh/b=2 version (\d+)\n$`)
	m := want.FindStringSubmatch(string(out))
	if m == nil || m[1] != m[2] || m[1] != m[3] {
		t.Fatalf("example printed %q; want both keys at the PutAll's revision", out)
	}
}
