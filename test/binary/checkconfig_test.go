package binary

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig runs putallkv -check-config as a deploy does before it touches a running
// node: a good configuration is OK on one line naming what the node would serve, even while
// its ports are taken and without creating its data directory; a bad one, or a token file
// that does not load, is refused on one line with exit 2.
func TestCheckConfig(t *testing.T) {
	server, _ := binaries(t)
	dir := t.TempDir()
	// The ports are held by this test: a check that opened them would fail.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dataDir := filepath.Join(dir, "data")
	confFile := filepath.Join(dir, "putallkv.yaml")
	conf := "server:\n  addr: " + ln.Addr().String() + "\nadmin:\n  addr: " + ln.Addr().String() +
		"\ngateway:\n  addr: \"\"\nstore:\n  data_dir: " + dataDir + "\n"
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(server, "-conf", confFile, "-check-config").Output()
	want := "putallkv: configuration OK: role=server rpc=" + ln.Addr().String() + " gateway= admin=http://" +
		ln.Addr().String() + " store=durable data_dir=" + dataDir + "\n"
	if err != nil || string(out) != want {
		t.Errorf("-check-config: %v, printed %q; want %q", err, out, want)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("-check-config touched the data directory: %v", err)
	}

	for _, tt := range []struct {
		name string
		env  string
		want string
	}{
		{"invalid key", "PUTALLKV_SERVER_ADDR=nope", "putallkv: config: server.addr: "},
		{"token file", "PUTALLKV_AUTH_TOKEN_FILE=" + filepath.Join(dir, "missing"), "putallkv: configuration refused: auth.token_file: "},
	} {
		cmd := exec.Command(server, "-conf", confFile, "-check-config")
		cmd.Env = append(os.Environ(), tt.env)
		out, err := cmd.CombinedOutput()
		if exitCode(err) != 2 || !strings.HasPrefix(string(out), tt.want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s: -check-config exited %d and printed %q; want exit 2 and one line starting %q", tt.name, exitCode(err), out, tt.want)
		}
	}
}
