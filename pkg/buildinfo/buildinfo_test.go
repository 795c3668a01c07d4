package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolve(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	vcs := func(mainVersion, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: mainVersion}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
		}}
	}
	tests := []struct {
		name                    string
		stampedV, stampedC      string
		bi                      *debug.BuildInfo
		wantVersion, wantCommit string
	}{
		{"stamped wins", "v1.2.0-3-gabc1234-dirty", "abc1234", vcs("v0.0.0-x", "false"), "v1.2.0-3-gabc1234-dirty", "abc1234"},
		{"module version and vcs", "", "", vcs("v0.0.0-20260101000000-0123456789ab+dirty", "true"),
			"v0.0.0-20260101000000-0123456789ab+dirty", rev + "-dirty"},
		{"devel: the short commit", "", "", vcs("(devel)", "false"), "0123456789ab", rev},
		{"devel and dirty", "", "", vcs("(devel)", "true"), "0123456789ab-dirty", rev + "-dirty"},
		{"nothing recorded", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "unknown", "unknown"},
		{"no build info", "", "", nil, "unknown", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.stampedV, tt.stampedC, tt.bi)
			want := Info{Version: tt.wantVersion, Commit: tt.wantCommit, GoVersion: runtime.Version()}
			if got != want {
				t.Errorf("resolve = %+v, want %+v", got, want)
			}
		})
	}
}

func TestCollector(t *testing.T) {
	i := Info{Version: "v1.0.0", Commit: "abc", GoVersion: "go1.26.8"}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(i.Collector("putallkv"))
	want := `# HELP putallkv_build_info The running build: version, commit and Go version in the labels; always 1.
# TYPE putallkv_build_info gauge
putallkv_build_info{commit="abc",goversion="go1.26.8",version="v1.0.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v1.0.0", Commit: "abc", GoVersion: "go1.26.8"}
	if got, want := i.String(), "v1.0.0 (commit abc, go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
