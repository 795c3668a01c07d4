package binary

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/internal/syncbuf"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// clusterNode starts the putallkv binary with store.engine redis_cluster on this binary's
// Redis Cluster, and an SDK client of it (no retries: each call is one attempt); both stop
// when the test ends.
func clusterNode(t *testing.T, server string) (*proc, *kvclient.Client) {
	t.Helper()
	conf := baseConf + fmt.Sprintf("store:\n  engine: redis_cluster\nredis:\n  addrs: %s\n", redisCluster(t))
	p := startBinary(t, server, filepath.Join(t.TempDir(), "putallkv.yaml"), conf)
	discardLogs(p)
	return p, testserver.Client(t, p.rpc, kvclient.WithRPCTimeout(10*time.Second), kvclient.WithRetries(0))
}

// Two putallkv processes on one Redis Cluster serve one data set: what one writes the other
// reads, over the SDK and HTTP, at the same versions; a request_id retried through the other
// node is replayed; a cross-slot ATOMIC write is refused with CROSS_SLOT (HTTP 400) and writes
// nothing; a TTL expires for both.
func TestBinariesShareRedisCluster(t *testing.T) {
	server, _ := binaries(t)
	pa, a := clusterNode(t, server)
	pb, b := clusterNode(t, server)
	ctx := context.Background()
	tag := fmt.Sprintf("{bin-%d}", time.Now().UnixNano())

	// SDK: write through a, read through b.
	put, err := a.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: tag + "name", Value: []byte("Ada")}, {Key: tag + "lang", Value: []byte("en")}}})
	if err != nil || put.Revision == 0 {
		t.Fatalf("PutAll through a: %+v, %v", put, err)
	}
	got, err := b.GetAll(ctx, &kv.GetAllRequest{Keys: []string{tag + "name", tag + "lang"}})
	if err != nil || got.Revision != put.Revision || string(got.Items[0].Value) != "Ada" || got.Items[1].Version != put.Revision {
		t.Fatalf("GetAll through b: %+v, %v; want what a wrote at revision %d", got, err, put.Revision)
	}

	// HTTP: write through b's gateway, read through a's, and the ETag is the version.
	code, h, _ := testnet.Do(t, http.MethodPut, "http://"+pb.gw+"/v1/kv/"+tag+"http", "over http")
	if code != http.StatusCreated {
		t.Fatalf("PUT through b: %d", code)
	}
	code, h2, body := testnet.Do(t, http.MethodGet, "http://"+pa.gw+"/v1/kv/"+tag+"http", "")
	if code != http.StatusOK || string(body) != "over http" || h2.Get("ETag") != h.Get("ETag") {
		t.Fatalf("GET through a: %d %q ETag %s; want what b wrote, ETag %s", code, body, h2.Get("ETag"), h.Get("ETag"))
	}

	// A retry of a request_id through the other node is replayed, nothing written again.
	id := tag + "req"
	req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: &id, Entries: []*kv.Entry{
		{Key: tag + "n", Value: []byte("1")}, {Key: fmt.Sprintf("spread-%d", time.Now().UnixNano()), Value: []byte("2")}}}
	first, err := a.PutAll(ctx, req)
	if err != nil || first.Replayed {
		t.Fatalf("PutAll with a request_id through a: %+v, %v", first, err)
	}
	again, err := b.PutAll(ctx, req)
	if err != nil || !again.Replayed || fmt.Sprint(again.Results) != fmt.Sprint(first.Results) {
		t.Fatalf("its retry through b: %+v, %v; want a replay of %+v", again, err, first)
	}

	// Cross-slot ATOMIC: refused with CROSS_SLOT over both transports, nothing written.
	other := fmt.Sprintf("other-%d", time.Now().UnixNano())
	_, err = b.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: []*kv.Entry{
		{Key: tag + "x", Value: []byte("1")}, {Key: other, Value: []byte("2")}}})
	if !errors.Is(err, kvclient.ErrCrossSlot) {
		t.Fatalf("cross-slot ATOMIC PutAll through b: %v; want CROSS_SLOT", err)
	}
	code, _, body = testnet.Do(t, http.MethodPost, "http://"+pa.gw+"/v1/kv:putAll",
		fmt.Sprintf(`{"mode":"atomic","entries":[{"key":%q,"value":"1"},{"key":%q,"value":"2"}]}`, tag+"x", other))
	var problem struct{ Code string }
	if code != http.StatusBadRequest || json.Unmarshal(body, &problem) != nil || problem.Code != "CROSS_SLOT" {
		t.Fatalf("cross-slot ATOMIC putAll through a's gateway: %d %s; want 400 CROSS_SLOT", code, body)
	}
	if got, err := a.GetAll(ctx, &kv.GetAllRequest{Keys: []string{tag + "x", other}}); err != nil || got.Items[0].Found || got.Items[1].Found {
		t.Fatalf("after the refusals: %+v, %v; want nothing written", got, err)
	}

	// TTL: a key written with a TTL through a is read through b until it expires, then is absent
	// for both, and create-only succeeds again.
	ttl := int64(300)
	if _, err := a.Put(ctx, &kv.PutRequest{Key: tag + "ttl", Value: []byte("t"), TtlMs: &ttl}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := b.Get(ctx, &kv.GetRequest{Key: tag + "ttl"})
		if errors.Is(err, kvclient.ErrNotFound) {
			break
		}
		if err != nil || r.Item.ExpiresAtMs == 0 {
			t.Fatalf("Get of the TTL key through b: %+v, %v; want it with its expiry", r, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key of TTL %d ms is still there after 30 s", ttl)
		}
		time.Sleep(20 * time.Millisecond) // polling for the expiry; the deadline bounds it
	}
	if _, err := a.Put(ctx, &kv.PutRequest{Key: tag + "ttl", Value: []byte("again"), ExpectedVersion: new(int64)}); err != nil {
		t.Fatalf("create-only put of the expired key through a: %v", err)
	}
}

// Create-only and compare-and-set races between the two nodes have exactly one winner.
func TestBinariesRaceOnRedisCluster(t *testing.T) {
	server, _ := binaries(t)
	_, a := clusterNode(t, server)
	_, b := clusterNode(t, server)
	ctx := context.Background()
	key := fmt.Sprintf("race-%d", time.Now().UnixNano())
	const racers = 8

	race := func(expected int64) (wins []int64, losers int, loss error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range racers {
			c := a
			if i%2 == 1 {
				c = b
			}
			wg.Go(func() {
				r, err := c.Put(ctx, &kv.PutRequest{Key: key, Value: fmt.Appendf(nil, "racer %d", i), ExpectedVersion: &expected})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, r.Version)
				case errors.Is(err, kvclient.ErrAlreadyExists), errors.Is(err, kvclient.ErrVersionMismatch):
					losers++
				default:
					loss = err
				}
			})
		}
		wg.Wait()
		return wins, losers, loss
	}
	wins, losers, err := race(0)
	if err != nil || len(wins) != 1 || losers != racers-1 {
		t.Fatalf("create-only race through two nodes: %d winners %v, %d losers, %v; want exactly one winner", len(wins), wins, losers, err)
	}
	wins, losers, err = race(wins[0])
	if err != nil || len(wins) != 1 || losers != racers-1 {
		t.Fatalf("compare-and-set race through two nodes: %d winners %v, %d losers, %v; want exactly one winner", len(wins), wins, losers, err)
	}
	got, err := b.Get(ctx, &kv.GetRequest{Key: key})
	if err != nil || got.Item.Version != wins[0] {
		t.Fatalf("after the races: %+v, %v; want the CAS winner's version %d", got, err, wins[0])
	}
}

// Concurrent ATOMIC PutAlls and GetAlls of keys in one hash slot, by clients spread over the
// two nodes, form a linearizable history (porcupine, the crash test's model), and every
// acknowledged write reads back at its version or later.
func TestBinariesLinearizableOnRedisCluster(t *testing.T) {
	server, _ := binaries(t)
	_, a := clusterNode(t, server)
	_, b := clusterNode(t, server)
	seed := rand.Uint64()
	if s := os.Getenv("CRASH_TEST_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (set CRASH_TEST_SEED to replay)", seed)
	r := &crashRound{t: t, seed: seed, began: time.Now(), acked: map[string]ack{},
		prefix: fmt.Sprintf("{lin-%d}", time.Now().UnixNano())}
	ctx, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for client := range 4 {
		c := a
		if client%2 == 1 {
			c = b
		}
		wg.Go(func() { r.drive(ctx, c, client, 0) })
	}
	wg.Wait()
	if err := r.readLin(context.Background(), a, 0); err != nil {
		t.Fatalf("seed %d: the final read: %v", seed, err)
	}
	checkAcked(t, b, r.acked, seed, 0)
	res, took := checkLinearizable(linState{}, r.history, linTimeout)
	t.Logf("%d operations through two nodes, %d keys acknowledged, linearizable: %s in %v",
		len(r.history), len(r.acked), res, took.Round(time.Millisecond))
	if res != porcupine.Ok {
		t.Fatalf("seed %d: the history through two nodes is %s, not linearizable", seed, res)
	}
	acked := 0
	for _, op := range r.history {
		if op.Input.(linInput).write && !op.Output.(linOutput).unknown {
			acked++
		}
	}
	if acked == 0 {
		t.Fatalf("seed %d: the history holds no acknowledged write: it proves nothing", seed)
	}
}

// ./build.sh cluster (script/cluster.sh) brings up a Redis Cluster and two nodes on it, prints
// their addresses, serves one data set through both (here with CLUSTER_MODULE=1: through the
// Redis module, which the script builds and loads), and Ctrl-C (SIGINT to its process group,
// as a terminal sends it) stops everything it started and exits 0.
func TestClusterScript(t *testing.T) {
	server, _ := binaries(t)
	redisBase, err := rediscluster.FreeBase()
	if err != nil {
		t.Fatal(err)
	}
	rpc, web, admin := freePair(t), freePair(t), freePair(t)
	cmd := exec.Command(filepath.Join(root, "script", "cluster.sh"))
	cmd.Env = append(os.Environ(), "CLUSTER_BIN="+server, "CLUSTER_MODULE=1", fmt.Sprintf("CLUSTER_REDIS_PORT=%d", redisBase),
		fmt.Sprintf("CLUSTER_RPC_PORT=%d", rpc), fmt.Sprintf("CLUSTER_HTTP_PORT=%d", web), fmt.Sprintf("CLUSTER_ADMIN_PORT=%d", admin))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncbuf.Buffer // read while the script may still write it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			<-done
		}
	})

	var printed []string
	timeout := time.After(3 * time.Minute)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("cluster.sh exited before serving:\n%s\n%s", strings.Join(printed, "\n"), stderr.String())
			}
			printed = append(printed, l)
			if strings.Contains(l, "Ctrl-C stops") {
				break wait
			}
		case <-timeout:
			t.Fatalf("cluster.sh did not start within 3 minutes:\n%s\n%s", strings.Join(printed, "\n"), stderr.String())
		}
	}
	text := strings.Join(printed, "\n")
	for _, want := range []string{fmt.Sprintf("127.0.0.1:%d..%d", redisBase, redisBase+5), fmt.Sprintf("http 127.0.0.1:%d", web),
		fmt.Sprintf("rpc 127.0.0.1:%d", rpc+1), "writes applied by the Redis module's PUTALL.APPLY"} {
		if !strings.Contains(text, want) {
			t.Fatalf("cluster.sh printed no %q:\n%s", want, text)
		}
	}
	key := fmt.Sprintf("script-%d", time.Now().UnixNano())
	if code, _, body := testnet.Do(t, http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/v1/kv/%s", web, key), "hello"); code != http.StatusCreated {
		t.Fatalf("PUT through node 1: %d %s", code, body)
	}
	if code, _, body := testnet.Do(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/kv/%s", web+1, key), ""); code != http.StatusOK || string(body) != "hello" {
		t.Fatalf("GET through node 2: %d %q", code, body)
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for range lines {
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cluster.sh after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("cluster.sh did not stop within a minute of Ctrl-C")
	}
	for _, port := range []int{redisBase, redisBase + 5, rpc, web + 1, admin} {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Fatalf("127.0.0.1:%d still answers after cluster.sh stopped", port)
		}
	}
}

// freePair returns a port p such that p and p+1 are free on 127.0.0.1 now.
func freePair(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("found no two free consecutive ports")
	return 0
}
