package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mint returns a token of role named name and its file line, failing the test on error.
func mint(t *testing.T, role Role, name string) (token, line string) {
	t.Helper()
	token, line, err := Mint(role, name)
	if err != nil {
		t.Fatal(err)
	}
	return token, line
}

// writeTokens writes lines as a token file in a fresh directory and returns its path.
func writeTokens(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMintedTokenIsRandomAndItsLineParses(t *testing.T) {
	a, lineA := mint(t, Write, "svc-a")
	b, _ := mint(t, Write, "svc-a")
	if a == b || !strings.HasPrefix(a, "pkv_") || len(a) != len("pkv_")+43 {
		t.Fatalf("tokens %q, %q: want two different pkv_ + 43 base64url characters", a, b)
	}
	if strings.Contains(lineA, a) {
		t.Fatalf("line %q holds the token itself", lineA)
	}
	toks, err := ParseTokens(strings.NewReader(lineA))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := toks.lookup(a); !ok || id != (Identity{Name: "svc-a", Role: Write}) {
		t.Fatalf("lookup = %+v, %v", id, ok)
	}
	if _, ok := toks.lookup(b); ok {
		t.Fatal("another token matched")
	}
	for _, bad := range []struct {
		role Role
		name string
	}{{None, "x"}, {Admin + 1, "x"}, {Read, ""}, {Read, "two words"}, {Read, strings.Repeat("n", 65)}} {
		if _, _, err := Mint(bad.role, bad.name); err == nil {
			t.Errorf("Mint(%v, %q) succeeded", bad.role, bad.name)
		}
	}
}

func TestParseTokensErrors(t *testing.T) {
	_, good := mint(t, Read, "ok")
	tests := []struct {
		name string
		file string
		want string // substring of the error
	}{
		{"no token", "# only a comment\n\n", "has no token"},
		{"plain token", "pkv_abc read x", "line 1: the hash must start with sha256:"},
		{"short hash", "sha256:abcd read x", "line 1: the hash must be 64 hex digits"},
		{"bad role", strings.Replace(good, " read ", " root ", 1), `unknown role "root"`},
		{"missing name", strings.TrimSuffix(good, " ok"), "got 2 fields"},
		{"duplicate", good + "\n# c\n" + good, "line 3: the same token as line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTokens(strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAuthorizeByRole(t *testing.T) {
	read, readLine := mint(t, Read, "reader")
	write, writeLine := mint(t, Write, "writer")
	admin, adminLine := mint(t, Admin, "operator")
	a, err := NewAuthenticator(writeTokens(t, "# tokens", readLine, writeLine, adminLine))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token string
		need  Role
		want  error
	}{
		{"", Read, ErrUnauthenticated},
		{"pkv_unknown", Read, ErrUnauthenticated},
		{strings.Repeat("x", 600), Read, ErrUnauthenticated},
		{"", None, nil},
		{read, Read, nil},
		{read, Write, ErrPermissionDenied},
		{read, Admin, ErrPermissionDenied},
		{write, Read, nil},
		{write, Write, nil},
		{write, Admin, ErrPermissionDenied},
		{admin, Read, nil},
		{admin, Write, nil},
		{admin, Admin, nil},
	}
	for _, tt := range tests {
		_, err := a.Authorize(tt.token, tt.need)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Authorize(token %.8q, %v) = %v; want %v", tt.token, tt.need, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), tt.token) && tt.token != "" {
			t.Errorf("the error %q holds the token", err)
		}
	}
	var off *Authenticator
	if _, err := off.Authorize("", Admin); err != nil {
		t.Errorf("a nil Authenticator refused: %v", err)
	}
}

// TestReloadKeepsTokensWhenFileIsBad checks that a reload applies a good file at once and
// that a bad file (or a missing one) is refused with the tokens in force kept.
func TestReloadKeepsTokensWhenFileIsBad(t *testing.T) {
	old, oldLine := mint(t, Write, "old")
	fresh, freshLine := mint(t, Write, "new")
	path := writeTokens(t, oldLine)
	a, err := NewAuthenticator(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(freshLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(old, Read); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a token removed from the file still works after reload: %v", err)
	}
	if _, err := a.Authorize(fresh, Write); err != nil {
		t.Errorf("a token added to the file is refused after reload: %v", err)
	}
	if err := os.WriteFile(path, []byte("sha256:nothex write broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("reload of a bad file: %v; want an error naming the line", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
	if _, err := a.Authorize(fresh, Write); err != nil || a.Tokens() != 1 {
		t.Errorf("after refused reloads the tokens in force changed: %v, %d tokens", err, a.Tokens())
	}
}

func TestBearerTokenAndContext(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer pkv_x": "pkv_x", "bearer  pkv_x ": "pkv_x", "Basic dXNlcjpw": "", "pkv_x": "", "": "",
	} {
		if got := BearerToken(header); got != want {
			t.Errorf("BearerToken(%q) = %q; want %q", header, got, want)
		}
	}
	ctx := ContextWithToken(context.Background(), "pkv_y")
	if tok, ok := TokenFromContext(ctx); !ok || tok != "pkv_y" {
		t.Errorf("TokenFromContext = %q, %v", tok, ok)
	}
	if _, ok := TokenFromContext(context.Background()); ok {
		t.Error("a bare context carries a token")
	}
}

// BenchmarkAuthorize is the server's cost of checking one call's token against a file of
// 100 tokens: a SHA-256 of the token and a constant-time comparison with every hash.
func BenchmarkAuthorize(b *testing.B) {
	var lines []string
	var token string
	for i := range 100 {
		tok, line, err := Mint(Write, fmt.Sprint("svc-", i))
		if err != nil {
			b.Fatal(err)
		}
		token, lines = tok, append(lines, line)
	}
	path := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		b.Fatal(err)
	}
	a, err := NewAuthenticator(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authorize(token, Read); err != nil {
			b.Fatal(err)
		}
	}
}
