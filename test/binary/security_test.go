package binary

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/putallkv/putallkv/pkg/auth/authtest"
)

// TestBinarySecureByDefault checks the server binary's refusals and reloads: without
// tokens it will not listen beyond loopback (exit 2, naming the key); with a token file it
// refuses putallctl without a token, and SIGHUP puts a rewritten file in force while a bad
// one keeps the tokens in force.
func TestBinarySecureByDefault(t *testing.T) {
	server, bin := binaries(t)
	for _, args := range [][]string{{"-addr", "0.0.0.0:0"}, {"-admin-addr", ":0"}} {
		out, err := exec.Command(server, args...).CombinedOutput()
		var ee *exec.ExitError
		key := map[string]string{"-addr": "server.addr", "-admin-addr": "admin.addr"}[args[0]]
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), key+": ") ||
			!strings.Contains(string(out), "auth.token_file") || !strings.Contains(string(out), "auth.disabled") {
			t.Errorf("%v: exit %v, output %q; want exit 2 naming %s and the two ways out", args, err, out, key)
		}
	}

	old, fresh := authtest.New(t), authtest.New(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	copyFile(t, old.File, tokens)
	p := startBinary(t, server, filepath.Join(dir, "putallkv.yaml"), baseConf+"auth:\n  token_file: "+tokens+"\n")
	put := func(token string) (string, int) {
		t.Helper()
		_, errOut, code := ctl(t, bin, p.rpc, "", "put", "k", "v", "--token", token)
		return errOut, code
	}
	if errOut, code := put(""); code != 1 || !strings.Contains(errOut, "UNAUTHENTICATED") {
		t.Fatalf("put without a token: exit %d %q", code, errOut)
	}
	if errOut, code := put(old.Read); code != 1 || !strings.Contains(errOut, "PERMISSION_DENIED") {
		t.Fatalf("put with a read token: exit %d %q", code, errOut)
	}
	if errOut, code := put(old.Write); code != 0 {
		t.Fatalf("put with a write token: exit %d %q", code, errOut)
	}
	hup := func(want string) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for l := range p.logs {
			if strings.Contains(l, "token file reload") || strings.Contains(l, "token file reloaded") {
				if !strings.Contains(l, want) {
					t.Fatalf("reload log %q; want %q", l, want)
				}
				for _, tok := range []string{old.Write, fresh.Write} {
					if strings.Contains(l, tok) {
						t.Fatalf("the log holds a token: %q", l)
					}
				}
				return
			}
		}
		t.Fatal("the server exited before logging the reload")
	}
	copyFile(t, fresh.File, tokens)
	hup("token file reloaded")
	if errOut, code := put(old.Write); code != 1 || !strings.Contains(errOut, "UNAUTHENTICATED") {
		t.Fatalf("put with a token the reload removed: exit %d %q", code, errOut)
	}
	if errOut, code := put(fresh.Write); code != 0 {
		t.Fatalf("put with a token the reload added: exit %d %q", code, errOut)
	}
	if err := os.WriteFile(tokens, []byte("sha256:broken write x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup("token file reload refused")
	if errOut, code := put(fresh.Write); code != 0 {
		t.Fatalf("put after a refused reload: exit %d %q; want the tokens in force kept", code, errOut)
	}
}
