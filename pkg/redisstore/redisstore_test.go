package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/pkg/store"
)

// fresh returns a key prefix no earlier run used, so tests on the shared cluster start from
// absent keys.
func fresh(t *testing.T) string {
	return fmt.Sprintf("%s:%d:", t.Name(), time.Now().UnixNano())
}

// keysInSlots returns n keys starting with prefix, each in a different slot.
func keysInSlots(prefix string, n int) []string {
	var keys []string
	slots := map[int]bool{}
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if s := Slot(dataKey(k)); !slots[s] {
			slots[s] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func put(key, value string, expect int64) store.Write {
	return store.Write{Key: key, Value: []byte(value), ExpectedVersion: expect}
}

func apply(t *testing.T, e *Engine, mode store.Mode, writes ...store.Write) (store.Outcome, []store.Result) {
	t.Helper()
	results := make([]store.Result, len(writes))
	out, err := e.Apply(context.Background(), store.Batch{Mode: mode, Writes: writes}, results)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return out, results
}

func getAll(t *testing.T, e *Engine, keys ...string) (int64, []store.Item) {
	t.Helper()
	items := make([]store.Item, len(keys))
	rev, err := e.GetAll(context.Background(), keys, items)
	if err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	return rev, items
}

// Slot is the slot Redis itself computes (CLUSTER KEYSLOT), tags and edge cases included.
func TestSlotMatchesClusterKeyslot(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 1})
	c := e.client
	for _, k := range slotKeys() {
		got, err := c.Do(context.Background(), c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", k, err)
		}
		if int(got) != Slot(k) {
			t.Fatalf("Slot(%q) = %d, Redis says %d", k, Slot(k), got)
		}
	}
}

// An ATOMIC batch over two slots is refused, naming two keys of different slots and the hash
// tag that fixes it, before anything is written; with one hash tag the same batch applies at
// one revision.
func TestAtomicAcrossSlotsRefusedBeforeWriting(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		keys := keysInSlots(fresh(t), 3)
		results := make([]store.Result, 3)
		_, err := e.Apply(context.Background(), store.Batch{Mode: store.Atomic, Writes: []store.Write{
			put(keys[0], "a", store.AnyVersion), put(keys[1], "b", store.AnyVersion), put(keys[2], "c", 0)}}, results)
		cs, ok := errors.AsType[*store.CrossSlotError](err)
		if !ok || !errors.Is(err, store.ErrCrossSlot) {
			t.Fatalf("Apply across slots: %v; want a *store.CrossSlotError", err)
		}
		if cs.First != keys[0] || cs.Second != keys[1] || cs.FirstSlot == cs.SecondSlot {
			t.Fatalf("CrossSlotError %+v; want keys %q and %q in different slots", cs, keys[0], keys[1])
		}
		for _, want := range []string{keys[0], keys[1], "hash tag", "{user42}"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not mention %q", err, want)
			}
		}
		if _, items := getAll(t, e, keys...); items[0].Found || items[1].Found || items[2].Found {
			t.Fatalf("a refused batch wrote: %+v", items)
		}

		tag := "{" + fresh(t) + "}"
		out, res := apply(t, e, store.Atomic, put(tag+"a", "a", 0), put(tag+"b", "b", 0))
		if out.Applied != 2 || out.Revision == 0 || res[0].Version != out.Revision || res[1].Version != out.Revision {
			t.Fatalf("one-tag atomic batch: %v %v", out, res)
		}
	})
}

// A BEST_EFFORT batch spans slots: each slot's group applies, every key reports its own
// version, and the batch's revision is set only when one slot applied.
func TestBestEffortAcrossSlots(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		keys := keysInSlots(fresh(t), 4)
		out, res := apply(t, e, store.BestEffort,
			put(keys[0], "0", 0), put(keys[1], "1", 0), put(keys[2], "2", 7), put(keys[3], "3", store.AnyVersion))
		if out.Applied != 3 || out.Revision != 0 {
			t.Fatalf("outcome %v; want 3 applied, no shared revision", out)
		}
		if res[2].Code != store.VersionMismatch || res[2].Version != 0 {
			t.Fatalf("keys[2]: %v; want VERSION_MISMATCH version=0", res[2])
		}
		_, items := getAll(t, e, keys...)
		for _, i := range []int{0, 1, 3} {
			if res[i].Code != store.OK || !res[i].Created || res[i].Version <= 0 {
				t.Fatalf("keys[%d]: %v", i, res[i])
			}
			if !items[i].Found || string(items[i].Value) != fmt.Sprint(i) || items[i].Version != res[i].Version {
				t.Fatalf("keys[%d] reads %v; want %q at version %d", i, items[i], fmt.Sprint(i), res[i].Version)
			}
		}
		if items[2].Found {
			t.Fatalf("keys[2] was written: %v", items[2])
		}

		// One slot applies, the other fails: the batch has that slot's revision.
		out, res = apply(t, e, store.BestEffort, put(keys[0], "x", res[0].Version), put(keys[1], "y", 0))
		if out.Applied != 1 || out.Revision == 0 || out.Revision != res[0].Version || res[1].Code != store.AlreadyExists {
			t.Fatalf("outcome %v %v; want keys[0] applied at the batch's revision", out, res)
		}
	})
}

// A key's version only ever increases, also across delete and re-create and through another
// engine (another putallkv node) on the same cluster: no version is ever given to two contents.
func TestVersionsNeverReusedAcrossDeleteAndRecreate(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		a, b := openEngine(t, Options{ReplicasAck: 1}), openEngine(t, Options{ReplicasAck: 1})
		k := fresh(t) + "k"
		var last int64
		for i := range 5 {
			e := a
			if i%2 == 1 {
				e = b
			}
			_, res := apply(t, e, store.Atomic, put(k, fmt.Sprint(i), 0))
			if !res[0].Created || res[0].Version <= last {
				t.Fatalf("round %d: create %v after version %d", i, res[0], last)
			}
			last = res[0].Version
			_, res = apply(t, e, store.Atomic, store.Write{Key: k, Delete: true, ExpectedVersion: last})
			if res[0].Code != store.OK || res[0].Version <= last {
				t.Fatalf("round %d: delete %v after version %d", i, res[0], last)
			}
			last = res[0].Version
			if _, items := getAll(t, e, k); items[0].Found {
				t.Fatalf("round %d: deleted key reads %v", i, items[0])
			}
		}
		// A stale version names no content any more.
		_, res := apply(t, a, store.BestEffort, put(k, "new", 0))
		results := make([]store.Result, 1)
		if _, err := a.Apply(context.Background(), store.Batch{Mode: store.Atomic,
			Writes: []store.Write{put(k, "stale", last)}}, results); err != nil || results[0].Code != store.VersionMismatch {
			t.Fatalf("write at a stale version: %v %v; want VERSION_MISMATCH (current %d)", results[0], err, res[0].Version)
		}
	})
}

// TTL: the expiry is kept to the millisecond, an expired key reads as absent and counts as
// absent for preconditions, and a put without TTL over a key with one makes it permanent.
func TestTTL(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		p := fresh(t)
		at := time.Now().Add(time.Hour).UnixMilli() + 7
		_, res := apply(t, e, store.Atomic, store.Write{Key: p + "long", Value: []byte("v"), ExpectedVersion: 0, ExpiresAtMs: at})
		if _, items := getAll(t, e, p+"long"); !items[0].Found || items[0].ExpiresAtMs != at || items[0].Version != res[0].Version {
			t.Fatalf("key with TTL reads %v; want expires=%d", items[0], at)
		}
		apply(t, e, store.Atomic, put(p+"long", "forever", res[0].Version))
		if _, items := getAll(t, e, p+"long"); !items[0].Found || items[0].ExpiresAtMs != 0 {
			t.Fatalf("a put without TTL left %v", items[0])
		}

		// Already expired when written: applied, then absent.
		_, res = apply(t, e, store.Atomic, store.Write{Key: p + "past", Value: []byte("v"), ExpectedVersion: 0,
			ExpiresAtMs: time.Now().Add(-time.Second).UnixMilli()})
		if res[0].Code != store.OK {
			t.Fatalf("put expiring in the past: %v", res[0])
		}
		if _, items := getAll(t, e, p+"past"); items[0].Found {
			t.Fatalf("a key that expired reads %v", items[0])
		}

		// Expiring while we wait (the wait is for Redis's clock to pass the expiry, polled with a
		// deadline), then created again with a create-only put at a higher version.
		short := time.Now().Add(200 * time.Millisecond).UnixMilli()
		_, res = apply(t, e, store.Atomic, store.Write{Key: p + "short", Value: []byte("v"), ExpectedVersion: 0, ExpiresAtMs: short})
		old := res[0].Version
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, items := getAll(t, e, p+"short")
			if !items[0].Found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("key expiring at %d still reads %v at %d", short, items[0], time.Now().UnixMilli())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if now := time.Now().UnixMilli(); now < short {
			t.Fatalf("key read as absent at %d, before its expiry %d", now, short)
		}
		_, res = apply(t, e, store.Atomic, put(p+"short", "again", 0))
		if !res[0].Created || res[0].Version <= old {
			t.Fatalf("re-create after expiry: %v, old version %d", res[0], old)
		}
	})
}

// GetAll reads each slot as of its revision: one slot gives its revision, several give 0, and
// a key may be named twice.
func TestGetAllRevisions(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 1})
	tag := "{" + fresh(t) + "}"
	out, _ := apply(t, e, store.Atomic, put(tag+"a", "1", 0), put(tag+"b", "2", 0))
	rev, items := getAll(t, e, tag+"a", tag+"b", tag+"a", tag+"c")
	if rev != out.Revision || string(items[0].Value) != "1" || string(items[2].Value) != "1" || items[3].Found {
		t.Fatalf("one-slot read: rev=%d %v; want rev=%d", rev, items, out.Revision)
	}
	keys := keysInSlots(fresh(t), 2)
	if rev, _ := getAll(t, e, keys...); rev != 0 {
		t.Fatalf("a read over two slots gave revision %d; want 0", rev)
	}
	if st := e.Stats(); st.Revision < out.Revision {
		t.Fatalf("Stats.Revision %d; want at least %d", st.Revision, out.Revision)
	}
}

// A write its replicas do not confirm in time is reported with store.ErrNotDurable, outcome
// unknown: here each master has one replica and the engine asks for two.
func TestUnconfirmedWriteIsOutcomeUnknown(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 2, AckTimeout: 50 * time.Millisecond})
		if !e.WaitsForDurability() {
			t.Fatal("an engine waiting for replicas says it does not")
		}
		k := fresh(t) + "k"
		results := make([]store.Result, 1)
		_, err := e.Apply(context.Background(), store.Batch{Mode: store.Atomic, Writes: []store.Write{put(k, "v", 0)}}, results)
		if !errors.Is(err, store.ErrNotDurable) || !strings.Contains(err.Error(), "outcome unknown") || !strings.Contains(err.Error(), "of 2 replicas") {
			t.Fatalf("Apply: %v; want ErrNotDurable, outcome unknown, 1 of 2 replicas", err)
		}
		if _, items := getAll(t, e, k); !items[0].Found {
			t.Fatalf("the unconfirmed write is not on its master: %v", items[0])
		}
		if openEngine(t, Options{}).WaitsForDurability() {
			t.Fatal("an engine with replicas_ack 0 says it waits")
		}
	})
}

// A master that forgot the scripts (SCRIPT FLUSH, or a replica promoted since) learns them
// again: the next call falls back to EVAL.
func TestScriptsReloadedAfterFlush(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 1})
	ctx := context.Background()
	for addr, n := range e.client.Nodes() {
		if err := n.Do(ctx, n.B().ScriptFlush().Build()).Error(); err != nil {
			t.Fatalf("SCRIPT FLUSH on %s: %v", addr, err)
		}
	}
	keys := keysInSlots(fresh(t), 3)
	out, _ := apply(t, e, store.BestEffort, put(keys[0], "0", 0), put(keys[1], "1", 0), put(keys[2], "2", 0))
	if out.Applied != 3 {
		t.Fatalf("after SCRIPT FLUSH: %v", out)
	}
	if _, items := getAll(t, e, keys...); !items[0].Found || !items[1].Found || !items[2].Found {
		t.Fatalf("after SCRIPT FLUSH: %v", items)
	}
}

// Repeated keys are refused whole, naming the first repeat, before anything is written.
func TestDuplicateKeyRefused(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		keys := keysInSlots(fresh(t), 2)
		results := make([]store.Result, 3)
		_, err := e.Apply(context.Background(), store.Batch{Mode: store.BestEffort,
			Writes: []store.Write{put(keys[0], "a", 0), put(keys[1], "b", 0), put(keys[0], "c", 0)}}, results)
		if d, ok := errors.AsType[*store.DuplicateKeyError](err); !ok || d.Key != keys[0] {
			t.Fatalf("Apply: %v; want a duplicate of %q", err, keys[0])
		}
		if _, items := getAll(t, e, keys...); items[0].Found || items[1].Found {
			t.Fatalf("a refused batch wrote: %v", items)
		}
	})
}

// A failed read is a plain error, not a write of unknown outcome; a write that may have been
// sent is one.
func TestFailedCallsSayWhatIsKnown(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		items := make([]store.Item, 1)
		if _, err := e.GetAll(ctx, []string{"k"}, items); err == nil || errors.Is(err, store.ErrNotDurable) {
			t.Fatalf("GetAll with a cancelled context: %v; want an error that is not ErrNotDurable", err)
		}
		results := make([]store.Result, 1)
		_, err := e.Apply(ctx, store.Batch{Mode: store.Atomic, Writes: []store.Write{put(fresh(t), "v", 0)}}, results)
		if !errors.Is(err, store.ErrNotDurable) || !strings.Contains(err.Error(), "outcome unknown") {
			t.Fatalf("Apply with a cancelled context: %v; want ErrNotDurable, outcome unknown", err)
		}
	})
}

// A write Redis refuses before running it (here: its master is out of memory, maxmemory 1
// with noeviction) is store.ErrRefused, nothing written, not a write of unknown outcome; reads
// still answer. The test restores every node's memory settings before it ends.
func TestOutOfMemoryRefusalWritesNothing(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		starve(t, e)
		k := fresh(t) + "k"
		results := make([]store.Result, 1)
		_, err := e.Apply(context.Background(), store.Batch{Mode: store.Atomic, Writes: []store.Write{put(k, "v", 0)}}, results)
		if !errors.Is(err, store.ErrRefused) || errors.Is(err, store.ErrNotDurable) ||
			!strings.Contains(err.Error(), "OOM") || !strings.Contains(err.Error(), "nothing was written") {
			t.Fatalf("Apply on an out-of-memory master: %v; want ErrRefused (OOM), nothing was written", err)
		}
		if _, items := getAll(t, e, k); items[0].Found {
			t.Fatalf("a refused write wrote: %v", items[0])
		}
	})
}

// starve sets maxmemory 1 with noeviction on every node the client knows, so that every master
// refuses writes with OOM; a cleanup restores each node's settings.
func starve(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	for addr, n := range e.client.Nodes() {
		got, err := n.Do(ctx, n.B().ConfigGet().Parameter("maxmemory", "maxmemory-policy").Build()).AsStrMap()
		if err != nil {
			t.Fatalf("CONFIG GET on %s: %v", addr, err)
		}
		t.Cleanup(func() {
			err := n.Do(ctx, n.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", got["maxmemory"]).
				ParameterValue("maxmemory-policy", got["maxmemory-policy"]).Build()).Error()
			if err != nil {
				t.Errorf("restoring maxmemory on %s: %v", addr, err)
			}
		})
		err = n.Do(ctx, n.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").
			ParameterValue("maxmemory-policy", "noeviction").Build()).Error()
		if err != nil {
			t.Fatalf("CONFIG SET on %s: %v", addr, err)
		}
	}
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu          sync.Mutex
	trips       map[string]int // op → round trips
	slots       map[string]int // op → slots over those round trips
	failed      map[string]int // op/reason → failures
	unconfirmed int
	unrecorded  int
}

func (r *recorder) RoundTrip(op string, slots int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips[op]++
	r.slots[op] += slots
}

func (r *recorder) Failed(op, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed[op+"/"+reason]++
}

func (r *recorder) Unconfirmed(writes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unconfirmed += writes
}

func (r *recorder) Unrecorded(writes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unrecorded += writes
}

// The Observer hears of every round trip with its slots, of each failure by its reason (a
// script the nodes forgot: noscript, then the call is sent again; a WAIT short of replicas; an
// out-of-memory refusal; a cancelled call) and of the writes applied that no WAIT confirmed.
func TestObserverHearsRoundTripsAndFailures(t *testing.T) {
	rec := &recorder{trips: map[string]int{}, slots: map[string]int{}, failed: map[string]int{}}
	e := openEngine(t, Options{ReplicasAck: 2, AckTimeout: 20 * time.Millisecond, Observer: rec})
	if n := e.Nodes(); n < rediscluster.Nodes/2 || n > rediscluster.Nodes {
		t.Errorf("Nodes() = %d; the cluster has %d masters and as many replicas", n, rediscluster.Nodes/2)
	}
	ctx := context.Background()
	for addr, n := range e.client.Nodes() {
		if err := n.Do(ctx, n.B().ScriptFlush().Build()).Error(); err != nil {
			t.Fatalf("SCRIPT FLUSH on %s: %v", addr, err)
		}
	}
	keys := keysInSlots(fresh(t), 3)
	getAll(t, e, keys...) // one round trip of 3 slots
	// One round trip of 3 slots refused NOSCRIPT, then one whose scripts apply and whose WAITs,
	// asking 2 replicas of 1, fail.
	writes := []store.Write{put(keys[0], "v", 0), put(keys[1], "v", 0), put(keys[2], "v", 0)}
	results := make([]store.Result, len(writes))
	if _, err := e.Apply(ctx, store.Batch{Mode: store.BestEffort, Writes: writes}, results); !errors.Is(err, store.ErrNotDurable) {
		t.Fatalf("Apply asking 2 replicas of 1: %v; want ErrNotDurable", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.GetAll(cancelled, keys[:1], make([]store.Item, 1)); err == nil {
		t.Fatal("GetAll with a cancelled context succeeded")
	}
	starve(t, e)
	// A key not written yet: the create-only put of a key that exists fails its precondition
	// without writing, which Redis does not refuse.
	if _, err := e.Apply(ctx, store.Batch{Mode: store.Atomic, Writes: []store.Write{put(keys[1]+"z", "v", 0)}}, results[:1]); !errors.Is(err, store.ErrRefused) {
		t.Fatalf("Apply on an out-of-memory master: %v; want ErrRefused", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.trips["read"] != 2 || rec.slots["read"] != 4 {
		t.Errorf("reads: %d round trips of %d slots; want 2 of 4 (3 answered, 1 cancelled)", rec.trips["read"], rec.slots["read"])
	}
	if rec.trips["apply"] < 3 || rec.slots["apply"] < 7 {
		t.Errorf("writes: %d round trips of %d slots; want at least 3 of 7", rec.trips["apply"], rec.slots["apply"])
	}
	for _, want := range []string{"apply/noscript", "apply/wait", "read/connection", "apply/oom"} {
		if rec.failed[want] == 0 {
			t.Errorf("no failure %s among %v", want, rec.failed)
		}
	}
	// (The out-of-memory write may go to a master that has not learnt the script yet: a fourth NOSCRIPT.)
	if rec.failed["apply/noscript"] < 3 || rec.failed["apply/wait"] != 3 {
		t.Errorf("%d scripts refused NOSCRIPT and %d WAITs short; want 3 or more, and 3 (one a slot)", rec.failed["apply/noscript"], rec.failed["apply/wait"])
	}
	if rec.unconfirmed != 3 || rec.unrecorded != 0 {
		t.Errorf("%d writes unconfirmed, %d unrecorded; want 3 and 0", rec.unconfirmed, rec.unrecorded)
	}
}

// An engine given a Redis ACL user authenticates as it on every node and works; a wrong
// password fails Open, saying so.
func TestACLUser(t *testing.T) {
	ctx := context.Background()
	user, password := fmt.Sprintf("putallkv-%d", time.Now().UnixNano()), "s3cret-pass"
	for _, addr := range rediscluster.Addrs(t) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Do(context.Background(), c.B().AclDeluser().Username(user).Build()).Error()
			c.Close()
		})
		if err := c.Do(ctx, c.B().AclSetuser().Username(user).Rule("on", ">"+password, "~*", "&*", "+@all").Build()).Error(); err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", addr, err)
		}
	}
	e := openEngine(t, Options{ReplicasAck: 1, Username: user, Password: password})
	k := fresh(t) + "k"
	out, _ := apply(t, e, store.Atomic, put(k, "v", 0))
	if _, items := getAll(t, e, k); !items[0].Found || items[0].Version != out.Revision {
		t.Fatalf("as ACL user %s: %v", user, items[0])
	}
	bad, err := Open(Options{Addrs: rediscluster.Addrs(t), Username: user, Password: "wrong", DialTimeout: 5 * time.Second})
	if err == nil {
		bad.Close()
		t.Fatal("Open with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Open with a wrong password: %v; want WRONGPASS", err)
	}
}

// A key is one string: the version and expiry in a 16-byte header, then the value, with the
// string's own expiry at the same instant. A string too short for the header (something other
// than the engine wrote it) fails the read instead of being misread.
func TestEntryLayout(t *testing.T) {
	e := openEngine(t, Options{ReplicasAck: 1})
	ctx := context.Background()
	k := fresh(t) + "k"
	at := time.Now().Add(time.Hour).UnixMilli()
	_, results := apply(t, e, store.Atomic, store.Write{Key: k, Value: []byte("value"), ExpectedVersion: store.AnyVersion, ExpiresAtMs: at})
	raw, err := e.client.Do(ctx, e.client.B().Get().Key(dataKey(k)).Build()).AsBytes()
	if err != nil {
		t.Fatalf("GET %s: %v", dataKey(k), err)
	}
	want := binary.BigEndian.AppendUint64(nil, uint64(results[0].Version))
	want = append(binary.BigEndian.AppendUint64(want, uint64(at)), "value"...)
	if !bytes.Equal(raw, want) {
		t.Fatalf("entry %x; want %x", raw, want)
	}
	if got, err := e.client.Do(ctx, e.client.B().Pexpiretime().Key(dataKey(k)).Build()).AsInt64(); err != nil || got != at {
		t.Fatalf("the key expires at %d (%v); want %d", got, err, at)
	}
	if err := e.client.Do(ctx, e.client.B().Set().Key(dataKey(k)).Value("short").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.GetAll(ctx, []string{k}, make([]store.Item, 1)); err == nil || !strings.Contains(err.Error(), "not an entry") {
		t.Fatalf("GetAll of a key holding 5 bytes: %v; want an error saying it is not an entry", err)
	}
}

// Writes with a precondition or an expiry among plain puts of one slot: each is checked and
// written by its own condition, whatever its place in the batch, and a failed ATOMIC batch
// reports every key's current version.
func TestConditionsAmongPlainPuts(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		e := openEngine(t, Options{ReplicasAck: 1})
		p := "{" + fresh(t) + "}"
		_, res := apply(t, e, store.Atomic, put(p+"a", "a1", store.AnyVersion), put(p+"b", "b1", store.AnyVersion))
		va, vb := res[0].Version, res[1].Version
		at := time.Now().Add(time.Hour).UnixMilli()

		// A plain put first, then a failing create-only put: nothing applies, both report their versions.
		_, res = apply(t, e, store.Atomic, put(p+"a", "a2", store.AnyVersion), put(p+"b", "b2", 0))
		if res[0].Code != store.OK || res[0].Version != va || res[1].Code != store.AlreadyExists || res[1].Version != vb {
			t.Fatalf("a failed ATOMIC batch: %v; want OK at %d, ALREADY_EXISTS at %d", res, va, vb)
		}
		out, res := apply(t, e, store.Atomic, put(p+"c", "c1", store.AnyVersion),
			store.Write{Key: p + "a", Value: []byte("a3"), ExpectedVersion: va, ExpiresAtMs: at},
			store.Write{Key: p + "b", Delete: true, ExpectedVersion: vb}, put(p+"d", "d1", 0))
		if out.Applied != 4 || !res[0].Created || res[1].Created || !res[3].Created {
			t.Fatalf("a batch of conditions among plain puts: %+v %v; want 4 applied, c and d created", out, res)
		}
		_, items := getAll(t, e, p+"a", p+"b", p+"c", p+"d")
		if string(items[0].Value) != "a3" || items[0].ExpiresAtMs != at || items[0].Version != out.Revision || items[1].Found ||
			string(items[2].Value) != "c1" || items[2].ExpiresAtMs != 0 || string(items[3].Value) != "d1" {
			t.Fatalf("after the batch: %+v", items)
		}
	})
}
