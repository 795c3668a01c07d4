// Package auth decides who may call: bearer tokens, each with a role, checked against a token
// file that holds only their SHA-256 hashes.
//
// A token is 32 random bytes (256 bits) in base64url behind the prefix "pkv_" (see Mint).
// The file has one token a line, "sha256:HEX ROLE NAME", where HEX is the SHA-256 of the whole
// token string, ROLE is read, write or admin, and NAME identifies the token in logs (the token
// itself is never logged, nor its hash). A stolen file gives no token: the hashes of 256-bit
// random strings cannot be reversed, and no salt is needed for that reason.
//
// Roles nest: write may do what read may, admin what write may. An Authenticator holds the
// current set of tokens and can reload the file (on SIGHUP); a file that does not parse is
// refused and the tokens already loaded stay in force.
package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// Role is what a token may do. Roles are ordered: a role may do everything a lower one may.
type Role int

// The roles, lowest first. None is the role of no token at all: it may call only what needs
// no authentication.
const (
	None Role = iota
	Read
	Write
	Admin
)

var roleNames = [...]string{None: "none", Read: "read", Write: "write", Admin: "admin"}

// String returns the role's name as the token file spells it.
func (r Role) String() string {
	if r < None || r > Admin {
		return fmt.Sprintf("Role(%d)", int(r))
	}
	return roleNames[r]
}

// ParseRole returns the role named s: read, write or admin.
func ParseRole(s string) (Role, error) {
	for r := Read; r <= Admin; r++ {
		if s == roleNames[r] {
			return r, nil
		}
	}
	return None, fmt.Errorf("unknown role %q: want read, write or admin", s)
}

// The two refusals. Callers map them to their transport: UNAUTHENTICATED (HTTP 401) and
// PERMISSION_DENIED (HTTP 403).
var (
	// ErrUnauthenticated: the call carries no token, or one that is not in the token file.
	ErrUnauthenticated = errors.New("auth: no valid token")
	// ErrPermissionDenied: the token is valid but its role is below what the call needs.
	ErrPermissionDenied = errors.New("auth: permission denied")
)

// tokenPrefix starts every minted token, so a token is recognisable in a config or a leak
// scanner's eyes.
const tokenPrefix = "pkv_"

// hashPrefix starts the hash field of a token file line, naming the hash function.
const hashPrefix = "sha256:"

// maxTokenBytes bounds a presented token: longer ones are refused unhashed.
const maxTokenBytes = 512

// Hash returns the token file's hash field for token: "sha256:" and the hex SHA-256 of it.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// Mint returns a new random token and its token file line with role and name.
func Mint(role Role, name string) (token, line string, err error) {
	if role < Read || role > Admin {
		return "", "", fmt.Errorf("auth: cannot mint a token of role %v", role)
	}
	if err := checkName(name); err != nil {
		return "", "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("auth: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, fmt.Sprintf("%s %s %s", Hash(token), role, name), nil
}

// checkName accepts a token's name: 1 to 64 printable ASCII characters without spaces, so a
// name fits one field of a line and one field of a log.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("auth: a token name must be 1 to 64 characters, got %q", name)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("auth: a token name must be printable ASCII without spaces, got %q", name)
		}
	}
	return nil
}

// entry is one token of a file: its hash and what it may do.
type entry struct {
	sum  digest
	role Role
	name string
}

// digest is a SHA-256 hash as four words, so that comparing two is four XORs.
type digest [sha256.Size / 8]uint64

func digestOf(sum [sha256.Size]byte) digest {
	var d digest
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(sum[8*i:])
	}
	return d
}

// equal reports 1 if d and o are equal, else 0, in time that does not depend on where they
// differ (crypto/subtle's way, a word at a time).
func (d *digest) equal(o *digest) int {
	diff := (d[0] ^ o[0]) | (d[1] ^ o[1]) | (d[2] ^ o[2]) | (d[3] ^ o[3])
	return int(((diff | -diff) >> 63) ^ 1)
}

// Tokens is a parsed token file. It is immutable.
type Tokens struct {
	entries []entry
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// ParseTokens reads a token file: one token a line, "sha256:HEX ROLE NAME"; blank lines and
// lines starting with # are skipped. Every bad line is reported with its number; a file
// without a token is an error too (it would lock every caller out).
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := make(map[digest]int)
	sc := bufio.NewScanner(r)
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseLine(line)
		if err == nil && seen[e.sum] != 0 {
			err = fmt.Errorf("the same token as line %d", seen[e.sum])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		seen[e.sum] = n
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: reading the token file: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: token file: %w", err)
	}
	if len(t.entries) == 0 {
		return nil, errors.New("auth: the token file has no token (mint one with `putallctl token ROLE NAME`)")
	}
	return t, nil
}

// parseLine parses "sha256:HEX ROLE NAME".
func parseLine(line string) (entry, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return entry{}, fmt.Errorf("want \"sha256:HEX ROLE NAME\", got %d fields", len(f))
	}
	var e entry
	h, ok := strings.CutPrefix(f[0], hashPrefix)
	if !ok {
		return entry{}, errors.New("the hash must start with sha256: (a token itself does not belong in the file)")
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return entry{}, fmt.Errorf("the hash must be %d hex digits", 2*sha256.Size)
	}
	e.sum = digestOf([sha256.Size]byte(b))
	if e.role, err = ParseRole(f[1]); err != nil {
		return entry{}, err
	}
	if err := checkName(f[2]); err != nil {
		return entry{}, err
	}
	e.name = f[2]
	return e, nil
}

// LoadTokens reads and parses the token file at path.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	return ParseTokens(io.LimitReader(f, 16<<20))
}

// Identity is who a valid token belongs to.
type Identity struct {
	// Name is the token's name in the file, safe to log.
	Name string
	// Role is what it may do.
	Role Role
}

// lookup finds token's entry. It compares the token's hash with every entry's in constant
// time and does not stop at a match (hashes are unique in a file, so at most one matches),
// so the time taken says nothing of which entry matched or how much of a hash did.
func (t *Tokens) lookup(token string) (Identity, bool) {
	if token == "" || len(token) > maxTokenBytes {
		return Identity{}, false
	}
	sum := digestOf(sha256.Sum256([]byte(token)))
	found := 0 // 1 + the index of the match
	for i := range t.entries {
		found |= (i + 1) * sum.equal(&t.entries[i].sum)
	}
	if found == 0 {
		return Identity{}, false
	}
	e := &t.entries[found-1]
	return Identity{Name: e.name, Role: e.role}, true
}

// Authenticator checks tokens against the tokens of a file, which Reload replaces. A nil
// *Authenticator lets every call through: authentication is off.
type Authenticator struct {
	path   string
	tokens atomic.Pointer[Tokens]
}

// NewAuthenticator loads the token file at path.
func NewAuthenticator(path string) (*Authenticator, error) {
	a := &Authenticator{path: path}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the token file again. On error the tokens loaded before stay in force.
func (a *Authenticator) Reload() error {
	t, err := LoadTokens(a.path)
	if err != nil {
		return err
	}
	a.tokens.Store(t)
	return nil
}

// Tokens returns how many tokens are in force.
func (a *Authenticator) Tokens() int { return a.tokens.Load().Len() }

// Authorize checks that token is in force and that its role is at least need. It returns
// ErrUnauthenticated (no token, or not one of the file's) or ErrPermissionDenied (a lower
// role), wrapped with a sentence that names the role needed and, for a known token, its
// name; a nil a or a need of None lets anything through.
func (a *Authenticator) Authorize(token string, need Role) (Identity, error) {
	if a == nil || need == None {
		return Identity{}, nil
	}
	id, ok := a.tokens.Load().lookup(token)
	switch {
	case !ok && token == "":
		return Identity{}, fmt.Errorf("%w: this call needs a token with the %s role, and none was sent", ErrUnauthenticated, need)
	case !ok:
		return Identity{}, fmt.Errorf("%w: the token sent is not one the server knows", ErrUnauthenticated)
	case id.Role < need:
		return id, fmt.Errorf("%w: this call needs the %s role; token %q has %s", ErrPermissionDenied, need, id.Name, id.Role)
	}
	return id, nil
}
