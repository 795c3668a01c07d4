// Package migrate tests putallctl migrate and import as an operator runs them: the built
// putallctl binary as a subprocess, copying from a real etcd (script/etcd.sh through
// internal/etcdtest, one per test binary) and a real Redis Cluster (script/redis-cluster.sh
// through internal/rediscluster, started by the first test that needs it) into a real putallkv
// server (internal/testserver), and killed with SIGKILL at random points to be resumed.
package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/putallkv/putallkv/internal/etcdtest"
	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// ctlPath is the putallctl binary TestMain built.
var ctlPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "putallctl-migrate-")
	if err == nil {
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/putallctl")
		cmd.Dir = filepath.Join("..", "..")
		var out []byte
		if out, err = cmd.CombinedOutput(); err != nil {
			err = fmt.Errorf("go build ./cmd/putallctl: %w\n%s", err, out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	ctlPath = filepath.Join(dir, "putallctl")
	etcdtest.MainWith(m, etcdtest.MainOptions{
		Cleanups: []func() error{stopCluster, func() error { return os.RemoveAll(dir) }},
		Leak:     rediscluster.LeakOptions(),
	})
}

// cluster is the Redis Cluster of this test binary, started by the first test that needs one.
var cluster struct {
	once sync.Once
	c    *rediscluster.Cluster
	err  error
}

func redisCluster(t *testing.T) *rediscluster.Cluster {
	t.Helper()
	cluster.once.Do(func() { cluster.c, cluster.err = rediscluster.Start(rediscluster.Options{}) })
	if cluster.err != nil {
		t.Fatal(cluster.err)
	}
	return cluster.c
}

func stopCluster() error {
	if cluster.c == nil {
		return nil
	}
	return cluster.c.Stop()
}

// report is the --json final line of load, import and migrate.
type report struct {
	Keys       int64 `json:"keys"`
	Bytes      int64 `json:"bytes"`
	Chunks     int64 `json:"chunks"`
	Written    int64 `json:"written"`
	Unchanged  int64 `json:"unchanged"`
	Retries    int64 `json:"retries"`
	Mismatches int64 `json:"mismatches"`
	Failed     int64 `json:"failed"`
	Skipped    int64 `json:"skipped"`
	Changed    int64 `json:"changed_in_source"`
	Deleted    int64 `json:"deleted_in_source"`
	Revision   int64 `json:"revision"`
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
	killed         bool
	elapsed        time.Duration
}

// report parses the run's final line.
func (r result) report(t *testing.T) report {
	t.Helper()
	var rep report
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("no report in the output (exit %d): %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	return rep
}

// ctl runs putallctl with --json and args against the server at addr; with killAfter > 0 it
// sends SIGKILL once that has passed, if the run is not over by then. Every run ends within a
// minute.
func ctl(t *testing.T, addr string, killAfter time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlPath, append([]string{"--addr", addr, "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var kill <-chan time.Time
	if killAfter > 0 {
		timer := time.NewTimer(killAfter)
		defer timer.Stop()
		kill = timer.C
	}
	r := result{}
	select {
	case <-done:
	case <-kill:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		r.killed = cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled()
	}
	r.elapsed = time.Since(start)
	r.code, r.stdout, r.stderr = cmd.ProcessState.ExitCode(), out.String(), errb.String()
	return r
}

// etcdClient returns a client of the binary's etcd, closed when t ends.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdtest.Endpoints(t), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// fillEtcd puts n keys prefix%06d = value-%d-<padding> into etcd, 128 to a transaction (etcd's
// default bound), eight transactions at a time (etcd commits concurrent ones together).
func fillEtcd(t *testing.T, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	const perTxn, workers = 128, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for first := w * perTxn; first < n; first += workers * perTxn {
				var ops []clientv3.Op
				for i := first; i < min(first+perTxn, n); i++ {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%06d", prefix, i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", 40))))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.Txn(ctx).Then(ops...).Commit()
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// etcdPairs reads every key under prefix from etcd now.
func etcdPairs(t *testing.T, cli *clientv3.Client, prefix string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// stored reads every key under prefix from putallkv, with the store's revision after.
func stored(t *testing.T, c *kvclient.Client, prefix string) (map[string]*kv.Item, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := map[string]*kv.Item{}
	for it, err := range kvclient.ScanAll(ctx, c, &kv.ScanRequest{Prefix: prefix}) {
		if err != nil {
			t.Fatal(err)
		}
		m[it.Key] = it
	}
	resp, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: []string{"revision-probe"}})
	if err != nil {
		t.Fatal(err)
	}
	return m, resp.Revision
}

// sum is the SHA-256 of key-value pairs in key order.
func sum(pairs map[string][]byte) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range pairs {
			if !yield(k) {
				return
			}
		}
	})
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(pairs[k]), pairs[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// values drops the items' versions.
func values(items map[string]*kv.Item) map[string][]byte {
	m := make(map[string][]byte, len(items))
	for k, it := range items {
		m[k] = it.Value
	}
	return m
}

// appliedOnce checks, for a store written by nothing but the run under test, that no key was
// written twice: each applied batch takes one revision, so every revision from 1 to the
// store's must still be some key's version (a batch applied again would leave its first
// revision with no key).
func appliedOnce(t *testing.T, items map[string]*kv.Item, revision int64) {
	t.Helper()
	versions := map[int64]bool{}
	for _, it := range items {
		versions[it.Version] = true
	}
	if int64(len(versions)) != revision {
		t.Errorf("%d distinct versions among the keys, store revision %d: some batch was applied again", len(versions), revision)
	}
}

// newSeed returns the seed of a test's random kill points: PUTALLCTL_KILL_SEED when set (to
// replay a failure), else a new one; it is logged either way.
func newSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PUTALLCTL_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("PUTALLCTL_KILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (PUTALLCTL_KILL_SEED replays it)", seed)
	return seed
}

// killAndResume runs putallctl args against addr until a run goes to its end: the first kills
// runs are killed with SIGKILL at a random point (20-320 ms in, drawn from seed) unless they end
// before, and every run after the checkpoint file cp appeared adds --resume. It returns the
// last run and how many were killed.
func killAndResume(t *testing.T, addr string, seed uint64, kills int, cp string, args ...string) (result, int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	killed := 0
	for {
		a := args
		if _, err := os.Stat(cp); err == nil {
			a = append(slices.Clip(a), "--resume")
		}
		killAfter := time.Duration(20+rng.IntN(300)) * time.Millisecond
		if killed == kills {
			killAfter = 0
		}
		r := ctl(t, addr, killAfter, a...)
		if !r.killed {
			return r, killed
		}
		killed++
	}
}

// TestMigrateEtcd100k migrates 100 000 keys from etcd with checksums: every key arrives once,
// with its value, and the report adds up.
func TestMigrateEtcd100k(t *testing.T) {
	const n = 100_000
	cli := etcdClient(t)
	fillEtcd(t, cli, "/m100k/", n)
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	cp := filepath.Join(t.TempDir(), "cp")
	r := ctl(t, s.RPCAddr(), 0, "migrate", "--from", "etcd://"+etcdtest.Endpoints(t)[0], "--prefix", "/m100k/",
		"--chunk-size", "1000", "--verify-checksum", "--checkpoint", cp)
	rep := r.report(t)
	if r.code != 0 || rep.Keys != n || rep.Written != n || rep.Chunks != 100 || rep.Mismatches != 0 {
		t.Fatalf("exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	t.Logf("migrated %d keys, %d bytes, in %d chunks in %v (%.0f keys/s), retries %d, mismatches %d",
		rep.Keys, rep.Bytes, rep.Chunks, r.elapsed.Round(time.Millisecond), float64(rep.Keys)/r.elapsed.Seconds(), rep.Retries, rep.Mismatches)
	got, rev := stored(t, testserver.Client(t, s.RPCAddr()), "/m100k/")
	if want := etcdPairs(t, cli, "/m100k/"); len(got) != n || sum(values(got)) != sum(want) {
		t.Errorf("%d keys in putallkv; sums equal: %v", len(got), sum(values(got)) == sum(want))
	}
	appliedOnce(t, got, rev)
}

// TestMigrateKilledAndResumed kills the migration with SIGKILL at random points, resuming it
// from its checkpoint each time: at the end nothing is missing, nothing was applied twice, and
// the checksums of source and destination are equal.
func TestMigrateKilledAndResumed(t *testing.T) {
	seed := newSeed(t)
	const n = 10_000
	cli := etcdClient(t)
	fillEtcd(t, cli, "/kill/", n)
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	cp := filepath.Join(t.TempDir(), "cp")
	args := []string{"migrate", "--from", "etcd://" + etcdtest.Endpoints(t)[0], "--prefix", "/kill/", "--chunk-size", "100",
		"--verify-checksum", "--checkpoint", cp}
	r, kills := killAndResume(t, s.RPCAddr(), seed, 4, cp, args...)
	if rep := r.report(t); r.code != 0 || rep.Mismatches != 0 {
		t.Fatalf("seed %d: exit %d, report %+v\n%s", seed, r.code, rep, r.stderr)
	}
	t.Logf("seed %d: killed %d times", seed, kills)
	got, rev := stored(t, testserver.Client(t, s.RPCAddr()), "/kill/")
	if want := etcdPairs(t, cli, "/kill/"); len(got) != n || sum(values(got)) != sum(want) {
		t.Errorf("seed %d: %d of %d keys in putallkv; sums equal: %v", seed, len(got), n, sum(values(got)) == sum(want))
	}
	appliedOnce(t, got, rev)
}

// TestMigrateReportsChangedInSource changes and deletes keys in etcd after the migration read
// them: resuming the finished migration reports them (exit 1, the changed key named), and a
// fresh migration copies the change alone.
func TestMigrateReportsChangedInSource(t *testing.T) {
	cli := etcdClient(t)
	fillEtcd(t, cli, "/chg/", 3000)
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	cp := filepath.Join(t.TempDir(), "cp")
	args := []string{"migrate", "--from", "etcd://" + etcdtest.Endpoints(t)[0], "--prefix", "/chg/", "--chunk-size", "500", "--checkpoint", cp}
	if r := ctl(t, s.RPCAddr(), 0, args...); r.code != 0 || r.report(t).Written != 3000 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/chg/000005", "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/chg/000006"); err != nil {
		t.Fatal(err)
	}
	r := ctl(t, s.RPCAddr(), 0, append(args, "--resume")...)
	if rep := r.report(t); r.code != 1 || rep.Changed != 1 || rep.Deleted != 1 || rep.Keys != 0 ||
		!strings.Contains(r.stderr, "changed in the source after it was copied: /chg/000005") {
		t.Fatalf("resumed after changes: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	r = ctl(t, s.RPCAddr(), 0, args...)
	if rep := r.report(t); r.code != 0 || rep.Written != 1 || rep.Unchanged != 2998 {
		t.Fatalf("migrated again: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	got, _ := stored(t, testserver.Client(t, s.RPCAddr()), "/chg/")
	if string(got["/chg/000005"].Value) != "new" {
		t.Errorf("/chg/000005 = %q", got["/chg/000005"].Value)
	}
}

// TestMigrateRetriesAdmission migrates into a server whose token bucket holds far fewer keys
// than a chunk: admission holds the Load stream back (the server writes each chunk in pieces of
// the tokens it gets, and reads no further meanwhile), and every key arrives. Entries refused
// outright are sent again: cmd/putallctl's TestRunLoadRetriesAdmission.
func TestMigrateRetriesAdmission(t *testing.T) {
	cli := etcdClient(t)
	fillEtcd(t, cli, "/adm/", 4000)
	s := testserver.Start(t, testserver.Config(t, func(c *config.Config) {
		c.Limiter = config.LimiterConfig{Rate: 20000, Burst: 200, MaxWait: 5 * time.Millisecond, MaxChunk: 100}
	}), nil)
	r := ctl(t, s.RPCAddr(), 0, "migrate", "--from", "etcd://"+etcdtest.Endpoints(t)[0], "--prefix", "/adm/",
		"--verify-checksum", "--checkpoint", filepath.Join(t.TempDir(), "cp"))
	rep := r.report(t)
	if r.code != 0 || rep.Written != 4000 || rep.Mismatches != 0 {
		t.Fatalf("exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	if got, _ := stored(t, testserver.Client(t, s.RPCAddr()), "/adm/"); len(got) != 4000 {
		t.Errorf("%d of 4000 keys in putallkv", len(got))
	}
}

// TestMigrateRedisCluster migrates the string keys under a prefix from every master of a Redis
// Cluster, checksummed, killed with SIGKILL at random points and resumed: every key arrives
// once; a key with a TTL keeps one, a hash is skipped and counted, keys outside the prefix (and
// one whose name holds glob characters, inside it) are told apart. A second migration, from one
// seed node, finds every key there already.
func TestMigrateRedisCluster(t *testing.T) {
	seed := newSeed(t)
	const n = 10_000
	rc := redisCluster(t)
	cli, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: rc.Addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	want := map[string][]byte{}
	var cmds rueidis.Commands
	for i := range n {
		k, v := fmt.Sprintf("r/%06d", i), fmt.Sprintf("value-%d", i)
		want[k] = []byte(v)
		cmds = append(cmds, cli.B().Set().Key(k).Value(v).Build())
	}
	want["r/[glob]*"] = []byte("g")
	want["r/ttl"] = []byte("t")
	cmds = append(cmds, cli.B().Set().Key("r/[glob]*").Value("g").Build(), cli.B().Set().Key("r/ttl").Value("t").PxMilliseconds(600000).Build(),
		cli.B().Set().Key("r0/outside").Value("o").Build(), cli.B().Hset().Key("r/hash").FieldValue().FieldValue("f", "v").Build())
	for _, resp := range cli.DoMulti(ctx, cmds...) {
		if err := resp.Error(); err != nil {
			t.Fatal(err)
		}
	}
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	cp := filepath.Join(t.TempDir(), "cp")
	r, kills := killAndResume(t, s.RPCAddr(), seed, 2, cp, "migrate", "--from", "redis://"+strings.Join(rc.Addrs, ","),
		"--prefix", "r/", "--verify-checksum", "--checkpoint", cp)
	if rep := r.report(t); r.code != 0 || rep.Mismatches != 0 {
		t.Fatalf("seed %d: exit %d, report %+v\n%s", seed, r.code, rep, r.stderr)
	}
	t.Logf("seed %d: killed %d times", seed, kills)
	got, rev := stored(t, testserver.Client(t, s.RPCAddr()), "r")
	if len(got) != n+2 || sum(values(got)) != sum(want) || got["r/ttl"].ExpiresAtMs == 0 {
		t.Errorf("seed %d: %d keys in putallkv, want %d; sums equal: %v", seed, len(got), n+2, sum(values(got)) == sum(want))
	}
	appliedOnce(t, got, rev)

	// Once more from the start: every key compared, none written, the hash counted as skipped.
	r = ctl(t, s.RPCAddr(), 0, "migrate", "--from", "redis://"+rc.Addrs[0], "--prefix", "r/", "--checkpoint", filepath.Join(t.TempDir(), "cp"))
	if rep := r.report(t); r.code != 0 || rep.Keys != n+2 || rep.Written != 0 || rep.Unchanged != n+2 || rep.Skipped != 1 {
		t.Fatalf("again: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	t.Logf("compared %d keys from a Redis Cluster of 3 masters in %v", n+2, r.elapsed.Round(time.Millisecond))
}

// TestImportKilledAndResumed exports 10 000 keys, then imports the file into another server,
// killing the import with SIGKILL at random points and resuming it: every key arrives once.
func TestImportKilledAndResumed(t *testing.T) {
	seed := newSeed(t)
	const n = 10_000
	dir := t.TempDir()
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, `{"key":"i/%06d","value":"value-%d"}`+"\n", i, i)
	}
	lines := filepath.Join(dir, "in.ndjson")
	if err := os.WriteFile(lines, []byte(in.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	src := testserver.Start(t, testserver.Config(t, nil), nil)
	export := filepath.Join(dir, "i.export")
	for _, args := range [][]string{{"load", lines}, {"--timeout", "1m", "export", "--prefix", "i/", "--chunk-keys", "100", export}} {
		if r := ctl(t, src.RPCAddr(), 0, args...); r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	want, _ := stored(t, testserver.Client(t, src.RPCAddr()), "i/")

	s := testserver.Start(t, testserver.Config(t, nil), nil)
	cp := filepath.Join(dir, "cp")
	r, kills := killAndResume(t, s.RPCAddr(), seed, 3, cp, "import", "--checkpoint", cp, export)
	if r.code != 0 {
		t.Fatalf("seed %d: exit %d\n%s\n%s", seed, r.code, r.stdout, r.stderr)
	}
	t.Logf("seed %d: killed %d times", seed, kills)
	got, rev := stored(t, testserver.Client(t, s.RPCAddr()), "i/")
	if len(got) != n || sum(values(got)) != sum(values(want)) {
		t.Errorf("seed %d: %d of %d keys imported; sums equal: %v", seed, len(got), n, sum(values(got)) == sum(values(want)))
	}
	appliedOnce(t, got, rev)
}

// TestMigrateCompactedRevision resumes at a revision etcd has compacted: the migration stops
// with etcd's reason, and a fresh one (a new read revision) copies everything.
func TestMigrateCompactedRevision(t *testing.T) {
	cli := etcdClient(t)
	fillEtcd(t, cli, "/cmp/", 300)
	ctx := context.Background()
	resp, err := cli.Put(ctx, "/cmp/last", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	s := testserver.Start(t, testserver.Config(t, nil), nil)
	args := []string{"migrate", "--from", "etcd://" + etcdtest.Endpoints(t)[0], "--prefix", "/cmp/", "--chunk-size", "100",
		"--checkpoint", filepath.Join(t.TempDir(), "cp")}
	r := ctl(t, s.RPCAddr(), 0, append(args, "--resume-from", fmt.Sprintf("key:/cmp/000099,rev:%d", resp.Header.Revision-1))...)
	if r.code != 1 || !strings.Contains(r.stderr, "required revision has been compacted") {
		t.Fatalf("resumed at a compacted revision: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r = ctl(t, s.RPCAddr(), 0, args...); r.code != 0 || r.report(t).Written != 301 {
		t.Fatalf("fresh migration: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
