// Package authtest makes token files for tests: one token of each role, minted as
// `putallctl token` mints them, written to a file in the test's temporary directory.
package authtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/putallkv/putallkv/pkg/auth"
)

// Tokens is a token file and one token of each role in it.
type Tokens struct {
	// File is the token file's path.
	File string
	// Read, Write and Admin are tokens of those roles.
	Read, Write, Admin string
}

// New mints a token of each role and writes their file.
func New(t testing.TB) Tokens {
	t.Helper()
	var tk Tokens
	var lines []byte
	for _, m := range []struct {
		role  auth.Role
		token *string
	}{{auth.Read, &tk.Read}, {auth.Write, &tk.Write}, {auth.Admin, &tk.Admin}} {
		token, line, err := auth.Mint(m.role, "test-"+m.role.String())
		if err != nil {
			t.Fatal(err)
		}
		*m.token = token
		lines = append(lines, line+"\n"...)
	}
	tk.File = filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tk.File, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	return tk
}

// Authenticator returns an Authenticator over the file.
func (tk Tokens) Authenticator(t testing.TB) *auth.Authenticator {
	t.Helper()
	a, err := auth.NewAuthenticator(tk.File)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
