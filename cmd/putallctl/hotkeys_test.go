package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/hotkey"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// hotServer runs a server that counts every write and calls 20 of them hot, and returns its
// admin address after writing "hot" 30 times and 30 other keys once.
func hotServer(t *testing.T, sampleEvery int) string {
	t.Helper()
	s := testserver.Start(t, testserver.Config(t, func(c *config.Config) {
		c.HotKeys.SampleEvery, c.HotKeys.Threshold = sampleEvery, 20
	}), nil)
	c, err := kvclient.New([]string{s.RPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 30 {
		req := &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "hot", Value: []byte("v")}, {Key: "cold" + string(rune('a'+i)), Value: []byte("v")}}}
		if _, err := c.PutAll(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	return s.AdminAddr()
}

func TestHotKeysCommand(t *testing.T) {
	admin := hotServer(t, 1)
	var out, errOut bytes.Buffer
	if code := run([]string{"hotkeys", "--admin", admin, "--count", "1"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "1 hot (threshold 20 sampled writes of 1 in 1") ||
		!strings.Contains(lines[1], "writes/s") || !strings.HasSuffix(lines[2], `"hot"`) || !strings.Contains(lines[2], "50.0%") {
		t.Fatalf("output:\n%s\nwant a header and one row: \"hot\" at a 50%% share", out.String())
	}

	out.Reset()
	if code := run([]string{"hotkeys", "--json", "--count", "2", "--interval", "1ms", "--admin", admin}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	dec := json.NewDecoder(&out)
	for i := range 2 {
		var r hotkey.Report
		if err := dec.Decode(&r); err != nil || len(r.Keys) != 1 || r.Keys[0].Key != "hot" {
			t.Fatalf("refresh %d: %+v, %v; want the one hot key", i, r, err)
		}
	}
}

func TestHotKeysCommandErrors(t *testing.T) {
	off := hotServer(t, 0)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--admin", off, "--count", "1"}, exitFailed, "does not detect hot keys"},
		{[]string{"--count", "-1"}, exitUsage, "--count must not be negative"},
		{[]string{"extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"--cert", "c.pem"}, exitUsage, "--cert and --key go together"},
	} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"hotkeys"}, tc.args...), nil, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("hotkeys %q: exit %d, %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
