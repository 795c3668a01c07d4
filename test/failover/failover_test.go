// Package failover kills a Redis Cluster master under write load and checks what the
// redis_cluster engine acknowledged against what survives. Each test starts a cluster of its
// own (script/redis-cluster.sh through internal/rediscluster, with a short node timeout), since
// a kill ruins it for anyone else.
package failover

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/pkg/leakcheck"
	"github.com/putallkv/putallkv/pkg/redisstore"
	"github.com/putallkv/putallkv/pkg/store"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m, rediscluster.LeakOptions()...) }

// Settings of the runs: the cluster's node timeout (a dead master is replaced in about that
// and a second or two more), the writers, and how long the replica is stalled before the kill.
const (
	nodeTimeout = 2 * time.Second
	writers     = 8
	stall       = time.Second
	valueBytes  = 64
	ackTimeout  = 500 * time.Millisecond
	// recoverWithin bounds each wait of a run; a run that waits longer fails.
	recoverWithin = 60 * time.Second
)

// With replicas_ack 1, a master killed under load (its replica stopped and cut off for a second
// before, so that the master holds writes the replica lacks) loses no acknowledged write: each reads
// back at its acknowledged version after the failover. The shard's writes stay unavailable
// until a replica is back, since WAIT 1 then has none to count: the run restarts the dead node,
// which rejoins as the new master's replica.
// Writes the master applied that no WAIT confirmed are counted (Observer.Unconfirmed, the
// putallkv_redis_unconfirmed_writes_total metric): some, while the replica is stalled, each
// one of the failed calls (of one write each). It holds for writes applied by the Lua script
// and by the Redis module's PUTALL.APPLY alike (the WAIT after each counts the module's writes
// too).
func TestFailoverLosesNoConfirmedWrite(t *testing.T) {
	for _, module := range []bool{false, true} {
		name := "script"
		if module {
			name = "module"
		}
		t.Run(name, func(t *testing.T) {
			r := failover(t, 1, module)
			if r.lost != 0 {
				t.Fatalf("%d acknowledged writes lost with replicas_ack 1; first: %s", r.lost, r.firstLost)
			}
			if r.unconfirmed == 0 || r.unconfirmed > r.failed {
				t.Fatalf("%d writes counted unconfirmed, %d calls failed; want at least one, and no more than the failed calls", r.unconfirmed, r.failed)
			}
		})
	}
}

// With replicas_ack 0, the writes the master acknowledged while its replica was stopped and cut
// off are lost when it dies, and only those: every write acknowledged before the stall survives.
func TestFailoverWithoutWaitLosesTheStalledWrites(t *testing.T) {
	r := failover(t, 0, false)
	if r.lostBeforeStall != 0 {
		t.Fatalf("%d writes acknowledged before the replica stalled were lost; first: %s", r.lostBeforeStall, r.firstLost)
	}
	if r.lost == 0 {
		t.Fatalf("no acknowledged write lost with replicas_ack 0 although the replica was stalled %v before the kill "+
			"(%d acknowledged on the shard meanwhile)", stall, r.ackedInStall)
	}
	if r.unconfirmed != 0 {
		t.Fatalf("%d writes counted unconfirmed with replicas_ack 0, which sends no WAIT", r.unconfirmed)
	}
}

// shard is a master, its replica and the slots it serves.
type shard struct {
	master, replica string
	ranges          [][2]int
}

func (s shard) has(slot int) bool {
	for _, r := range s.ranges {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// firstShard reads CLUSTER NODES from addr and returns the shard serving slot 0.
func firstShard(t *testing.T, addr string) shard {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text, err := c.Do(context.Background(), c.B().ClusterNodes().Build()).ToString()
	if err != nil {
		t.Fatalf("CLUSTER NODES: %v", err)
	}
	text = strings.TrimPrefix(text, "txt:") // RESP3 sends it as a verbatim string
	addrOf := map[string]string{}           // node id → host:port
	masterOf := map[string]string{}
	var s shard
	var id string
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addrOf[f[0]], _, _ = strings.Cut(f[1], "@")
		if strings.Contains(f[2], "slave") {
			masterOf[f[3]] = f[0]
			continue
		}
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err2 != nil {
				b, err2 = a, nil
			}
			if err1 == nil && a == 0 {
				id = f[0]
			}
			if err1 == nil && err2 == nil && id == f[0] {
				s.ranges = append(s.ranges, [2]int{a, b})
			}
		}
	}
	s.master, s.replica = addrOf[id], addrOf[masterOf[id]]
	if s.master == "" || s.replica == "" || len(s.ranges) == 0 {
		t.Fatalf("no master with a replica serves slot 0:\n%s", text)
	}
	return s
}

// ack is one acknowledged write: its key's version, when it was acknowledged, and whether its
// key is on the killed master's shard.
type ack struct {
	key     string
	version int64
	at      time.Time
	onShard bool
}

// report is what a run measured.
type report struct {
	acked, ackedOnShard, ackedInStall, failed int
	lost, lostBeforeStall                     int
	firstLost                                 string
	unconfirmed                               int // writes applied that no WAIT confirmed
}

// unconfirmedCounter is an Observer that counts the writes applied that no WAIT confirmed.
type unconfirmedCounter struct{ n atomic.Int64 }

func (*unconfirmedCounter) RoundTrip(string, int, time.Duration) {}
func (*unconfirmedCounter) Failed(string, string)                {}
func (c *unconfirmedCounter) Unconfirmed(writes int)             { c.n.Add(int64(writes)) }
func (*unconfirmedCounter) Unrecorded(int)                       {}

// failover runs writers against a fresh cluster through the engine with replicasAck (applying
// through the Redis module, loaded by the cluster's nodes, when module is set), stalls
// the replica of the shard serving slot 0, kills its master and resumes the replica, waits
// until the shard takes acknowledged writes again, and reads every acknowledged write back.
func failover(t *testing.T, replicasAck int, module bool) report {
	cl, err := rediscluster.Start(rediscluster.Options{NodeTimeout: nodeTimeout, Module: module})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Stop(); err != nil {
			t.Error(err)
		}
	})
	sh := firstShard(t, cl.Addrs[0])
	t.Logf("cluster %v; killing master %s (slots %v), stalling its replica %s", cl.Addrs, sh.master, sh.ranges, sh.replica)
	var unconfirmed unconfirmedCounter
	e, err := redisstore.Open(redisstore.Options{Addrs: cl.Addrs, ReplicasAck: replicasAck, AckTimeout: ackTimeout, Observer: &unconfirmed,
		Module: module})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	var acks []ack
	failed := 0
	shardAcks := make(chan time.Time, 1<<16) // acknowledgements on the shard, for the controller
	var wg sync.WaitGroup
	prefix := fmt.Sprintf("fo%d-%d-", replicasAck, time.Now().UnixNano())
	for w := range writers {
		wg.Go(func() {
			results := make([]store.Result, 1)
			value := make([]byte, valueBytes)
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("%s%d-%d", prefix, w, i)
				start := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := e.Apply(cctx, store.Batch{Mode: store.Atomic, Writes: []store.Write{
					{Key: key, Value: value, ExpectedVersion: store.AnyVersion}}}, results)
				cancel()
				now := time.Now()
				onShard := sh.has(redisstore.Slot("k:" + key))
				mu.Lock()
				if err != nil {
					failed++
				} else {
					acks = append(acks, ack{key: key, version: results[0].Version, at: now, onShard: onShard})
				}
				mu.Unlock()
				if err == nil && onShard {
					select {
					case shardAcks <- start:
					default:
					}
				}
				if err != nil {
					select { // a failing shard answers at once: do not spin on it
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	// waitShardAck waits for an acknowledgement on the shard of a write begun after since, and
	// returns when that write began.
	waitShardAck := func(what string, since time.Time) time.Time {
		deadline := time.After(recoverWithin)
		for {
			select {
			case at := <-shardAcks:
				if at.After(since) {
					return at
				}
			case <-deadline:
				t.Fatalf("no write on the shard of %s acknowledged within %v %s", sh.master, recoverWithin, what)
			}
		}
	}
	for range 200 {
		waitShardAck("before the kill", time.Time{})
	}
	t.Logf("load running; stalling the replica")
	stallAt := time.Now()
	if err := cl.Signal(sh.replica, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cutReplicas(t, sh.master)
	time.Sleep(stall) // the load runs on while the replica is stalled: this is the run's setting, not a wait for an event
	killAt := time.Now()
	if err := cl.Signal(sh.master, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cl.Signal(sh.replica, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the master")
	var restartAt time.Time
	if replicasAck > 0 {
		// WAIT needs a replica: bring the dead node back once its replica has taken over.
		waitPromoted(t, sh.replica)
		restartAt = time.Now()
		t.Logf("replica promoted %v after the kill; restarting the dead node", restartAt.Sub(killAt).Round(time.Millisecond))
		if err := cl.Restart(sh.master); err != nil {
			t.Fatal(err)
		}
	}
	backAt := waitShardAck("after the kill", killAt)
	stop()
	wg.Wait()

	r := report{acked: len(acks), failed: failed, unconfirmed: int(unconfirmed.n.Load())}
	for _, a := range acks {
		if a.onShard {
			r.ackedOnShard++
			if a.at.After(stallAt) && a.at.Before(killAt) {
				r.ackedInStall++
			}
		}
	}
	lost := readBack(t, cl.Addrs, acks)
	sort.Slice(lost, func(i, j int) bool { return lost[i].at.Before(lost[j].at) })
	for _, a := range lost {
		r.lost++
		if a.at.Before(stallAt) {
			r.lostBeforeStall++
		}
	}
	if len(lost) > 0 {
		r.firstLost = fmt.Sprintf("%s at version %d, acknowledged %v after the stall began", lost[0].key, lost[0].version,
			lost[0].at.Sub(stallAt).Round(time.Millisecond))
	}
	restarted := ""
	if !restartAt.IsZero() {
		restarted = fmt.Sprintf(", dead node restarted %v after the kill", restartAt.Sub(killAt).Round(time.Millisecond))
	}
	t.Logf("replicas_ack=%d node_timeout=%v: %d writes acknowledged (%d on the killed master's shard, %d of them while its replica was stalled %v), "+
		"%d failed or unconfirmed (%d applied but unconfirmed); %d acknowledged writes lost; the shard's writes unavailable %v from the kill%s",
		replicasAck, nodeTimeout, r.acked, r.ackedOnShard, r.ackedInStall, stall, r.failed, r.unconfirmed, r.lost,
		backAt.Sub(killAt).Round(time.Millisecond), restarted)
	return r
}

// cutReplicas closes the connections of addr's replicas, so that while its replica is stopped
// nothing the master writes reaches it: not even into the kernel's socket buffers, which would
// deliver it after the master died.
func cutReplicas(t *testing.T, addr string) {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := c.Do(context.Background(), c.B().ClientKill().TypeReplica().Build()).AsInt64()
	if err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE replica on %s: %d closed, %v; want its one replica", addr, n, err)
	}
}

// waitPromoted waits until the node at addr reports itself a master.
func waitPromoted(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(recoverWithin)
	for {
		role, err := roleOf(addr)
		if err == nil && role == "master" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not promoted within %v (role %q, %v)", addr, recoverWithin, role, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the node's role; the deadline bounds it
	}
}

// roleOf asks the node at addr for its role.
func roleOf(addr string) (string, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := c.Do(ctx, c.B().Role().Build()).ToArray()
	if err != nil || len(r) == 0 {
		return "", err
	}
	return r[0].ToString()
}

// readBack reads every acknowledged write's key through a new engine and returns those not at
// their acknowledged version or later.
func readBack(t *testing.T, addrs []string, acks []ack) []ack {
	t.Helper()
	e, err := redisstore.Open(redisstore.Options{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var lost []ack
	const batch = 500
	for start := 0; start < len(acks); start += batch {
		part := acks[start:min(start+batch, len(acks))]
		keys := make([]string, len(part))
		for i, a := range part {
			keys[i] = a.key
		}
		items := make([]store.Item, len(keys))
		deadline := time.Now().Add(recoverWithin)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := e.GetAll(ctx, keys, items)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reading the acknowledged writes back: %v", err)
			}
		}
		for i, a := range part {
			if !items[i].Found || items[i].Version < a.version {
				lost = append(lost, a)
			}
		}
	}
	return lost
}
