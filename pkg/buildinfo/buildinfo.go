// Package buildinfo says which build of putallkv is running: its version, the commit it was
// built from and the Go toolchain that built it, for `putallkv -version`, `putallctl version`
// and the putallkv_build_info metric.
//
// build.sh stamps the version and commit with the linker:
//
//	go build -ldflags "-X github.com/putallkv/putallkv/pkg/buildinfo.version=$(git describe --always --dirty) -X github.com/putallkv/putallkv/pkg/buildinfo.commit=$(git rev-parse HEAD)"
//
// A binary built without them (plain `go build` or `go install`) falls back to what the go
// command recorded of the module and its version control (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Set with -ldflags -X by build.sh; empty in a binary built otherwise.
var (
	version string
	commit  string
)

// unknown stands for a version or commit that nothing recorded (a test binary, say).
const unknown = "unknown"

// Info describes one build.
type Info struct {
	// Version is `git describe --always --dirty` at build time (e.g. v1.2.0-3-gabc1234-dirty),
	// else the module version the go command derived, else the short commit.
	Version string
	// Commit is the full commit hash, with "-dirty" when the work tree had changes.
	Commit string
	// GoVersion is the Go toolchain that built the binary (runtime.Version()).
	GoVersion string
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, bi)
}

// resolve combines the linker-stamped version and commit with bi (nil when the binary has no
// build information): a stamped value wins, then what the go command recorded, then unknown.
func resolve(stampedVersion, stampedCommit string, bi *debug.BuildInfo) Info {
	info := Info{Version: stampedVersion, Commit: stampedCommit, GoVersion: runtime.Version()}
	var vcsVersion string
	if bi != nil {
		var revision, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if revision != "" {
			if modified == "true" {
				revision += "-dirty"
			}
			if info.Commit == "" {
				info.Commit = revision
			}
			vcsVersion = shortCommit(revision)
		}
		if v := bi.Main.Version; info.Version == "" && v != "" && v != "(devel)" {
			info.Version = v
		}
	}
	if info.Version == "" {
		info.Version = vcsVersion
	}
	if info.Version == "" {
		info.Version = unknown
	}
	if info.Commit == "" {
		info.Commit = unknown
	}
	return info
}

// shortCommit abbreviates a commit hash as git does (12 hex digits), keeping a "-dirty" mark.
func shortCommit(c string) string {
	const n = 12
	hash, dirty := strings.CutSuffix(c, "-dirty")
	if len(hash) > n {
		hash = hash[:n]
	}
	if dirty {
		hash += "-dirty"
	}
	return hash
}

// String is the one-line form the binaries print for -version:
// "putallkv v1.2.0 (commit abc..., go1.26.8)" without the program name.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}

// Collector returns the gauge NAME_build_info, always 1, whose labels version, commit and
// goversion carry i: the usual Prometheus way to put the build on a dashboard and to join it
// with other series.
func (i Info) Collector(namespace string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "The running build: version, commit and Go version in the labels; always 1.",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	}, func() float64 { return 1 })
}
