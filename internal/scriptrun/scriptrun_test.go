package scriptrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(p, []byte("#!/usr/bin/env bash\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	out, err := Run(time.Minute, []string{"GREETING=hello"}, script(t, `echo "$GREETING $1"; echo err >&2`), "world")
	if err != nil || out != "hello world\nerr\n" {
		t.Fatalf("Run = %q, %v; want the output of both streams", out, err)
	}
	if _, err := Run(time.Minute, nil, script(t, "echo broken; exit 3")); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("a failing script: %v; want an error carrying its output", err)
	}
	if _, err := Run(100*time.Millisecond, nil, script(t, "exec sleep 60")); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("a script past its limit: %v; want it killed", err)
	}
}
