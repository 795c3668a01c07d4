package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/internal/server"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/wal"
)

// TestE2EDataDirIsLocked starts two servers in one process on one data directory: the second
// refuses to start, naming the directory and the holder's pid, and the first keeps serving.
func TestE2EDataDirIsLocked(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	_, c := startTestServer(t, cfg)
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: "k", Value: []byte("acknowledged")}); err != nil {
		t.Fatal(err)
	}
	second := *cfg
	_, err := server.Start(&second, quiet)
	if err == nil || !strings.Contains(err.Error(), cfg.Store.DataDir) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second server on the same data directory: %v; want an error naming %s and pid %d", err, cfg.Store.DataDir, os.Getpid())
	}
	if resp, err := c.Get(context.Background(), &kv.GetRequest{Key: "k"}); err != nil || string(resp.GetItem().GetValue()) != "acknowledged" {
		t.Fatalf("get after the second server gave up: %v %v", resp, err)
	}
}

// TestE2ERefusesDamagedLastRecord flips a bit in the last record of the log, an acknowledged
// write: that is corruption, not a torn write, so the server refuses to start and says how to
// inspect and repair the directory.
func TestE2ERefusesDamagedLastRecord(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	a, err := server.Start(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	api := a.Service()
	for i := range 10 {
		if _, err := api.PutAll(context.Background(), &kv.PutAllRequest{Entries: []*kv.Entry{{Key: fmt.Sprint("k", i), Value: []byte("value")}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.Store.DataDir, "*.wal"))
	last := segs[len(segs)-1]
	b, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 0x04 // inside the last record
	if err := os.WriteFile(last, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = server.Start(cfg, quiet)
	if err == nil || !strings.Contains(err.Error(), last) || !strings.Contains(err.Error(), "putallctl wal check "+cfg.Store.DataDir) ||
		!strings.Contains(err.Error(), "putallctl wal repair "+cfg.Store.DataDir) {
		t.Fatalf("start on a log whose last record is damaged: %v; want a refusal naming the file and pointing at wal check and repair", err)
	}
	if rep, err := wal.Check(cfg.Store.DataDir); err != nil || rep.Sound() || rep.TornTail != nil {
		t.Fatalf("wal.Check = %+v, %v; want corruption, not a torn tail", rep, err)
	}
}

// TestE2EUnknownFsyncPolicyRefused starts a durable server whose wal.fsync names no policy
// (a configuration built in code, which config.Validate has not seen): start-up is refused
// naming the key. Before, the wiring read the name from a map and ran an unknown name as
// "always" without a word.
func TestE2EUnknownFsyncPolicyRefused(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.DataDir = t.TempDir()
	cfg.WAL.Fsync = "sometimes"
	s, err := server.Start(cfg, quiet)
	if err == nil {
		testnet.Stop(t, s)
	}
	if err == nil || !strings.Contains(err.Error(), `wal.fsync: must be always, interval or none, got "sometimes"`) {
		t.Fatalf("start with wal.fsync %q: %v; want a refusal naming wal.fsync and the three policies", cfg.WAL.Fsync, err)
	}
}
