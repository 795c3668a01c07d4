// Package ops tests what operators are given besides the binaries: the Prometheus alert rules
// in conf/prometheus, checked and unit-tested by the real promtool (Debian's prometheus
// package, installed by internal/promserver when missing and the test runs as root), and read against the
// /metrics page of a real server so that no rule watches a series the server does not export.
package ops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/promserver"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// rulesDir holds alerts.yml and its unit tests, alerts_test.yml.
var rulesDir = filepath.Join("..", "..", "conf", "prometheus")

// TestAlertRules runs `promtool check rules` on alerts.yml and `promtool test rules` on its unit
// tests, in which every alert fires on a node crafted to raise it and stays silent on a healthy
// one.
func TestAlertRules(t *testing.T) {
	promtool := promserver.Binary(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

// TestAlertRulesUseExportedSeries reads every putallkv_ series name alerts.yml mentions, in its
// expressions and its runbook text alike, and finds each on the /metrics page of a real server
// with a durable store, a gateway and write admission, after calls that create every labelled
// series the rules read (a refused write among them, and a snapshot).
func TestAlertRulesUseExportedSeries(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(rulesDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	page := scrapeBusyServer(t)
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(page, -1) {
		exported[m[1]] = true
		if m[2] == "histogram" {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				exported[m[1]+suffix] = true
			}
		}
	}
	used := regexp.MustCompile(`putallkv_[a-z0-9_]+`).FindAllString(string(rules), -1)
	slices.Sort(used)
	used = slices.Compact(used)
	if len(used) < 10 {
		t.Fatalf("alerts.yml mentions only %d series: %v", len(used), used)
	}
	for _, name := range used {
		if !exported[name] {
			t.Errorf("alerts.yml uses %s, which /metrics does not have", name)
		}
	}
	t.Logf("%d putallkv_ series in alerts.yml, all on /metrics", len(used))
}

// scrapeBusyServer starts a server from the default configuration on loopback ports with a
// durable store and write admission of one key a second, makes it admit and refuse writes and
// take a snapshot, and returns its /metrics page.
func scrapeBusyServer(t *testing.T) string {
	s := testserver.Start(t, testserver.Config(t, func(cfg *config.Config) {
		cfg.Store.DataDir = t.TempDir()
		cfg.Limiter.Rate, cfg.Limiter.Burst, cfg.Limiter.MaxWait = 1, 2, 0
	}), nil)
	c := testserver.Client(t, s.RPCAddr())
	// Two keys take the whole bucket, which refills one a second: within a few calls one is
	// refused (at most 10, far more than the bucket can refill for between them).
	refused := false
	for i := 0; i < 10 && !refused; i++ {
		req := &kv.PutAllRequest{Entries: []*kv.Entry{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}}
		_, err := c.PutAll(context.Background(), req)
		refused = err != nil
	}
	if !refused {
		t.Fatal("write admission of one key a second admitted 10 batches of 2 keys in a row")
	}
	if code, _, body := testnet.Do(t, "POST", "http://"+s.AdminAddr()+"/admin/snapshot", ""); code != 200 {
		t.Fatalf("snapshot: %d %s", code, body)
	}
	return testnet.Get(t, "http://"+s.AdminAddr()+"/metrics")
}
