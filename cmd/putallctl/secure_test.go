package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/auth"
)

// TestTokenCommand checks that `putallctl token` prints a token and a token file line that
// admits it with the role asked for, and refuses bad arguments.
func TestTokenCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"token", "write", "billing"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "pkv_") || !strings.HasSuffix(lines[1], " write billing") {
		t.Fatalf("stdout %q; want the token, then its line", out.String())
	}
	if strings.Contains(lines[1], lines[0]) || strings.Contains(errOut.String(), lines[0]) {
		t.Fatalf("the line %q (or stderr) holds the token", lines[1])
	}
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewAuthenticator(file)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Authorize(lines[0], auth.Write); err != nil || id.Name != "billing" {
		t.Fatalf("the minted line does not admit the token as a writer: %+v, %v", id, err)
	}
	if _, err := a.Authorize(lines[0], auth.Admin); err == nil {
		t.Fatal("a write token passed as admin")
	}
	for _, args := range [][]string{{"token"}, {"token", "root", "x"}, {"token", "read", "two words"}} {
		if code := run(args, nil, &out, &errOut); code != exitUsage {
			t.Errorf("%q: exit %d; want %d", args, code, exitUsage)
		}
	}
}
