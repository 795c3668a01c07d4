package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testserver"
)

// TestRunScan runs `putallctl scan` against a real server: every page followed, values or keys
// only, in JSON too; a refused cursor-less call (a bad limit) exits 1 with the code.
func TestRunScan(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	ctl := func(args ...string) (int, []string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"--addr", s.RPCAddr()}, args...), strings.NewReader(
			`{"key":"user/1","value":"ada"}`+"\n"+`{"key":"user/2","value":"grace"}`+"\n"+
				`{"key":"user/3","value":"hedy"}`+"\n"+`{"key":"admin","value":"root"}`+"\n"), &out, &errb)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		slices.Sort(lines) // the server's order is not the keys'
		return code, lines, errb.String()
	}
	if code, _, errs := ctl("putall", "--atomic"); code != exitOK {
		t.Fatalf("putall: exit %d, %s", code, errs)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"scan", "user/", "--limit", "1"}, []string{
			`user/1  version=1  code=OK  value="ada"`, `user/2  version=1  code=OK  value="grace"`, `user/3  version=1  code=OK  value="hedy"`}},
		{[]string{"scan", "--keys-only", "--limit", "2"}, []string{
			`admin  version=1  code=OK`, `user/1  version=1  code=OK`, `user/2  version=1  code=OK`, `user/3  version=1  code=OK`}},
		{[]string{"--json", "scan", "adm"}, []string{`{"key":"admin","version":1,"code":"OK","value_base64":"cm9vdA=="}`}},
	} {
		code, lines, errs := ctl(tc.args...)
		if code != exitOK || !slices.Equal(lines, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, lines\n%s\nwant\n%s", tc.args, code, errs, strings.Join(lines, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	if code, _, errs := ctl("scan", "user/", "--limit", "100000"); code != exitFailed || !strings.HasPrefix(errs, "putallctl: INVALID_ARGUMENT: limit must be between 1 and 1000") {
		t.Errorf("a limit over the server's: exit %d, stderr %q", code, errs)
	}
}
