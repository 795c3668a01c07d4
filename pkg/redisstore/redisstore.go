// Package redisstore is the redis_cluster engine: a store.Engine over a Redis Cluster, so that
// any number of stateless putallkv processes serve one data set that Redis spreads over its
// masters and fails over to replicas.
//
// Keys map to Redis hash slots as Redis maps them (Slot), `{tag}` hash tags putting keys in one
// slot. Apply groups a batch by slot and applies each slot's group with one server-side Lua
// script (scripts.go) that checks every precondition and writes values, versions and expiry
// atomically; a key is one Redis string, its version and expiry in a header before the value
// (entry.go). Each slot keeps its own revision counter, in that slot; a write's version is its
// slot's next revision, shared by the call's keys in that slot, so a key's version only ever
// increases, also across delete and re-create. The engine narrows store.Engine's contract:
//
//   - An Atomic batch must keep every key in one slot; otherwise Apply refuses it, before
//     anything is written, with a *store.CrossSlotError naming two keys in different slots.
//   - A BestEffort batch spans slots: each slot's group applies atomically, at its own
//     revision. Outcome.Revision is set only when every applied key shares one (one slot
//     applied something); otherwise it is 0.
//   - GetAll reads each slot's keys as of that slot's revision (one MGET per slot); across
//     slots the reads are not one snapshot. The revision it returns is the slot's when every
//     key is in one slot, otherwise 0.
//   - Stats.Revision is the highest revision this process has seen; Stats.Keys is not counted
//     (0), and there is no quota: Redis's maxmemory bounds the data.
//
// A batch of an idempotent call (store.Batch.Call) is recorded in Redis, so that a retry
// reaching any process is replayed: each slot's script appends its writes' outcomes to the
// call's record in that slot (recordKey), in the same step as the writes, and answers the
// writes its record already holds from it. A call that spans slots is thus applied at most
// once per write: a process that dies between slots leaves the earlier slots' writes applied
// and recorded, and the retry replays those and applies the rest. A record lives for the
// idempotency window (Call.ExpiresAtMs) and holds at most Options.MaxRecordBytes.
//
// ApplyAll (store.ManyApplier) sends the scripts of many batches, such as the calls of one
// PutAllMany, in one round trip to each master, rather than one round trip per batch.
//
// After a batch's writes, Apply sends WAIT for Options.ReplicasAck replicas (at most
// Options.AckTimeout) on the connection that wrote them, and returns store.ErrNotDurable
// (outcome unknown) when fewer confirm. WAIT does not make Redis strongly consistent: a
// confirmed write reached a replica's memory, and a failover promotes one of the replicas,
// which is the one that confirmed only when a master has a single replica.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/putallkv/putallkv/pkg/store"
)

// Options configure an Engine.
type Options struct {
	// Addrs are seed nodes of the cluster, host:port; the client learns the rest.
	Addrs []string
	// ReplicasAck is how many replicas must confirm a write (WAIT) before Apply acknowledges
	// it; 0 acknowledges once the master applied it (a failover may then lose it). Configuration
	// defaults it to DefaultReplicasAck.
	ReplicasAck int
	// AckTimeout bounds the wait for the replicas; 0 means DefaultAckTimeout.
	AckTimeout time.Duration
	// Observer is told of every round trip to the cluster and every failed command, for
	// metrics; nil: nobody.
	Observer Observer
	// Username and Password authenticate to every node (Redis ACL); both empty: no AUTH.
	Username, Password string
	// TLS, when set, is how to speak TLS to the nodes (nil: plain TCP).
	TLS *tls.Config
	// DialTimeout bounds connecting to a node; 0 means rueidis's 5 s.
	DialTimeout time.Duration
	// BlockingPoolSize is how many connections per node writes that WAIT may hold at once; 0
	// means rueidis's 1024.
	BlockingPoolSize int
	// Module says the masters have loaded putallkv's Redis module (pkg/redisstore/module):
	// writes are applied by its PUTALL.APPLY command, which does what the apply script does at
	// a fraction of its cost. A node that answers that it does not know the command gets the
	// script instead (the Observer hears "nomodule"), so the module can be rolled out node by
	// node.
	Module bool
	// MaxRecordBytes bounds an idempotency record in one slot (the payload digest and 21
	// bytes per write); 0 means DefaultMaxRecordBytes. Writes that would grow a record past
	// it apply without being recorded, and a retry runs them again.
	MaxRecordBytes int
}

// Observer is told what the engine asks of the cluster, so that an operator sees the Redis
// side of the calls (pkg/metrics' RedisCluster turns it into Prometheus series; it is an
// Observer by its methods alone, so neither package imports the other). op is "apply" (a
// write) or "read". Its methods are called on the calls' goroutines and must not block.
type Observer interface {
	// RoundTrip reports one round trip: the commands for slots hash slots (a write's script
	// calls, with their WAITs when replicas must confirm; a read's MGETs), sent together,
	// answered after d, whatever the answers.
	RoundTrip(op string, slots int, d time.Duration)
	// Failed reports a command (a script call, a WAIT or an MGET) that failed, by reason: a
	// refusal's first word in lower case (clusterdown, oom, masterdown, tryagain, loading,
	// readonly, busy); "noscript" (the node did not know the script: it is sent again with
	// it); "nomodule" (the node did not know the module's command: the script is sent
	// instead); "error" (another Redis error); "connection" (no answer: the connection failed or the
	// call's context ended); "wait" (fewer replicas than replicas_ack confirmed within
	// ack_timeout).
	Failed(op, reason string)
	// Unconfirmed reports writes a script applied (or replayed) on their master that the WAIT
	// after it did not confirm: their call failed with its outcome unknown, and a failover may
	// lose them.
	Unconfirmed(writes int)
	// Unrecorded reports writes of an idempotent call that applied without being recorded,
	// their record having reached Options.MaxRecordBytes: a retry of those runs them again.
	Unrecorded(writes int)
}

// nobody is the Observer of an engine given none.
type nobody struct{}

func (nobody) RoundTrip(string, int, time.Duration) {}
func (nobody) Failed(string, string)                {}
func (nobody) Unconfirmed(int)                      {}
func (nobody) Unrecorded(int)                       {}

// Defaults of the configuration.
const (
	DefaultReplicasAck = 1
	DefaultAckTimeout  = time.Second
	// DefaultMaxRecordBytes holds the outcomes of about 50 000 writes of one call in a slot.
	DefaultMaxRecordBytes = 1 << 20
)

// Engine is the redis_cluster engine. It is safe for concurrent use.
type Engine struct {
	client      rueidis.Client
	replicasAck int
	ackTimeout  time.Duration
	observer    Observer
	module      bool
	// maxRecordBytes is Options.MaxRecordBytes as the script's argument.
	maxRecordBytes string
	revision       atomic.Int64  // the highest revision seen, for Stats
	unrecorded     atomic.Uint64 // writes of idempotent calls left out of their record
}

var _ store.Engine = (*Engine)(nil)

// Open connects to the cluster at opts.Addrs.
func Open(opts Options) (*Engine, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redisstore: no cluster addresses")
	}
	e := &Engine{replicasAck: opts.ReplicasAck, ackTimeout: opts.AckTimeout, observer: opts.Observer, module: opts.Module}
	if e.observer == nil {
		e.observer = nobody{}
	}
	if e.replicasAck < 0 {
		return nil, fmt.Errorf("redisstore: replicas_ack %d is negative", e.replicasAck)
	}
	if e.ackTimeout <= 0 {
		e.ackTimeout = DefaultAckTimeout
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecordBytes
	}
	e.maxRecordBytes = strconv.Itoa(opts.MaxRecordBytes)
	// rueidis shuffles InitAddress in place: give it a copy, not the caller's slice.
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: slices.Clone(opts.Addrs), DisableCache: true, ShuffleInit: true,
		Username: opts.Username, Password: opts.Password, Dialer: net.Dialer{Timeout: opts.DialTimeout},
		BlockingPoolSize: opts.BlockingPoolSize, TLSConfig: opts.TLS})
	if err != nil {
		return nil, fmt.Errorf("redisstore: connecting to %v: %w", opts.Addrs, err)
	}
	e.client = c
	return e, nil
}

// group is the indexes of a batch's writes (or a read's keys) in one slot, in batch order.
type group struct {
	slot int
	idx  []int
}

// groupBySlot groups n user keys (key(i) is the i-th) by the slot of their data keys, groups
// in order of their first key.
func groupBySlot(n int, key func(int) string) []group {
	var groups []group
	var at map[int]int // slot → index in groups, once there are too many groups to look through
	for i := range n {
		s, g := dataSlot(key(i)), -1
		if at != nil {
			if j, ok := at[s]; ok {
				g = j
			}
		} else {
			for j := range groups {
				if groups[j].slot == s {
					g = j
					break
				}
			}
		}
		if g < 0 {
			g = len(groups)
			groups = append(groups, group{slot: s})
			if at != nil {
				at[s] = g
			} else if len(groups) == 16 {
				at = make(map[int]int)
				for j, gr := range groups {
					at[gr.slot] = j
				}
			}
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	return groups
}

// Apply implements store.Engine.
func (e *Engine) Apply(ctx context.Context, b store.Batch, results []store.Result) (store.Outcome, error) {
	var outs [1]store.Outcome
	var errs [1]error
	e.ApplyAll(ctx, []store.Batch{b}, [][]store.Result{results}, outs[:], errs[:])
	return outs[0], errs[0]
}

// ApplyAll implements store.ManyApplier: the scripts of all the batches go out together, in
// one round trip to each master they touch (when replicas must confirm, with one WAIT per slot
// after all of them), where one Apply after another would take a round trip each. On a
// master, the scripts run in the batches' order.
func (e *Engine) ApplyAll(ctx context.Context, batches []store.Batch, results [][]store.Result, outs []store.Outcome, errs []error) {
	e.applyAll(ctx, batches, results, outs, errs, nil)
}

// unit is one slot's group of one batch's writes: one script call.
type unit struct {
	batch int
	g     group
}

// applyAll applies the batches' groups, all of them or, in tests, those keep admits (a process
// that died between slots), and fills results, outs and errs.
func (e *Engine) applyAll(ctx context.Context, batches []store.Batch, results [][]store.Result, outs []store.Outcome, errs []error, keep func(group) bool) {
	var units []unit
	first := make([]int, len(batches)+1) // batch i's units are units[first[i]:first[i+1]]
	for i, b := range batches {
		first[i] = len(units)
		outs[i] = store.Outcome{}
		var groups []group
		groups, errs[i] = checkBatch(b, results[i])
		for _, g := range groups {
			if keep == nil || keep(g) {
				units = append(units, unit{batch: i, g: g})
			}
		}
	}
	first[len(batches)] = len(units)
	if len(units) == 0 {
		return
	}
	modes := make([]string, len(batches))
	recs := make([]recordArgs, len(batches))
	for i, b := range batches {
		modes[i] = "b"
		if b.Mode == store.Atomic {
			modes[i] = "a"
		}
		recs[i] = e.recordArgs(b.Call)
	}
	replies, unitErrs := e.runScripts(ctx, units, func(via invocation, u unit) rueidis.Completed {
		return e.applyCommand(via, u.g, modes[u.batch], recs[u.batch], batches[u.batch].Writes)
	})
	for i := range batches {
		us := units[first[i]:first[i+1]]
		if errs[i] != nil || len(us) == 0 {
			continue
		}
		if err := errors.Join(unitErrs[first[i]:first[i+1]]...); err != nil {
			errs[i] = e.failure(err, len(us) > 1)
			continue
		}
		outs[i], errs[i] = e.outcome(batches[i], results[i], us, replies[first[i]:first[i+1]])
	}
}

// checkBatch checks that b can be applied and groups its writes by slot (none for no writes).
func checkBatch(b store.Batch, results []store.Result) ([]group, error) {
	writes := b.Writes
	if len(results) != len(writes) {
		return nil, fmt.Errorf("redisstore: %d results for %d writes", len(results), len(writes))
	}
	if b.Mode != store.Atomic && b.Mode != store.BestEffort {
		return nil, fmt.Errorf("redisstore: unknown mode %d", b.Mode)
	}
	if k, dup := store.FirstRepeat(b.Writes); dup {
		return nil, &store.DuplicateKeyError{Key: k}
	}
	groups := groupBySlot(len(writes), func(i int) string { return writes[i].Key })
	if b.Mode == store.Atomic && len(groups) > 1 {
		a, z := writes[groups[0].idx[0]].Key, writes[groups[1].idx[0]].Key
		return nil, &store.CrossSlotError{First: a, FirstSlot: groups[0].slot, Second: z, SecondSlot: groups[1].slot}
	}
	return groups, nil
}

// outcome fills results from the replies of batch b's units (their scripts' answers, in
// order) and says what the batch did.
func (e *Engine) outcome(b store.Batch, results []store.Result, units []unit, replies []rueidis.RedisMessage) (store.Outcome, error) {
	writes := b.Writes
	var out store.Outcome
	// The batch has one revision when every applied write has the same one in the same slot.
	var firstRev int64
	firstSlot := -1
	replayed, sameRev := int64(0), true
	applied := make([]bool, len(writes))
	for ui, u := range units {
		g := u.g
		r, err := fillResults(replies[ui], g, writes, results, applied)
		if errors.Is(err, store.ErrRequestConflict) && len(units) > 1 {
			err = fmt.Errorf("%w (in slot %d; the call's writes in other slots may have applied under it)", err, g.slot)
		}
		if err != nil {
			return store.Outcome{}, err
		}
		if r.unrecorded > 0 {
			e.unrecorded.Add(uint64(r.unrecorded))
			e.observer.Unrecorded(int(r.unrecorded))
		}
		e.seen(r.rev)
		replayed += r.replayed
		for _, i := range g.idx {
			if !applied[i] {
				continue
			}
			out.Applied++
			if firstRev == 0 {
				firstRev, firstSlot = results[i].Version, g.slot
			} else if results[i].Version != firstRev || g.slot != firstSlot {
				sameRev = false
			}
		}
	}
	if b.Mode == store.Atomic && out.Applied < len(writes) {
		return store.Outcome{}, nil
	}
	if sameRev {
		out.Revision = firstRev
	}
	out.Replayed = replayed == int64(len(writes))
	return out, nil
}

// recordArgs are the script's record arguments for call: its digest, the record's expiry and
// byte bound, or none.
type recordArgs struct {
	id, digest, expiresAt string
	offset                int
}

func (e *Engine) recordArgs(call *store.Call) recordArgs {
	if call == nil {
		return recordArgs{}
	}
	return recordArgs{id: call.ID, digest: string(call.Digest[:]), expiresAt: strconv.FormatInt(call.ExpiresAtMs, 10),
		offset: call.Offset}
}

// appendCondition appends a write's condition as the apply script reads it: the expected
// version and the expiry, each 8 bytes big-endian (two's complement).
func appendCondition(b []byte, expect, expiresAtMs int64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(expect))
	return binary.BigEndian.AppendUint64(b, uint64(expiresAtMs))
}

// applyCommand is the command applying group g's writes, invoked as via says (applyScript
// says what the arguments are).
func (e *Engine) applyCommand(via invocation, g group, mode string, rec recordArgs, writes []store.Write) rueidis.Completed {
	keys := make([]string, 0, len(g.idx)+2)
	args := make([]string, 0, 6+len(g.idx))
	keys = append(keys, revisionKey(g.slot))
	indexes := ""
	if rec.digest != "" {
		keys = append(keys, recordKey(g.slot, rec.id))
		b := make([]byte, 0, 4*len(g.idx))
		for _, i := range g.idx {
			b = binary.BigEndian.AppendUint32(b, uint32(rec.offset+i))
		}
		indexes = string(b)
	} else {
		keys = append(keys, revisionKey(g.slot))
	}
	var conds []byte
	for j, i := range g.idx {
		w := &writes[i]
		if conds == nil && (w.ExpectedVersion != store.AnyVersion || !w.Delete && w.ExpiresAtMs > 0) {
			conds = make([]byte, 0, 16*len(g.idx))
			for range j { // the writes before had neither
				conds = appendCondition(conds, store.AnyVersion, 0)
			}
		}
		if conds != nil {
			at := w.ExpiresAtMs
			if w.Delete {
				at = 0
			}
			conds = appendCondition(conds, w.ExpectedVersion, at)
		}
	}
	args = append(args, mode, rec.digest, rec.expiresAt, e.maxRecordBytes, indexes, string(conds))
	for _, i := range g.idx {
		w := &writes[i]
		keys = append(keys, dataKey(w.Key))
		tail := ""
		if !w.Delete {
			tail = entryTail(w.ExpiresAtMs, w.Value)
		}
		args = append(args, tail)
	}
	return applyInvocation(e.client, via, keys, args)
}

// invocation is how a group's writes are applied; a unit starts with the first its engine
// uses and moves on to the next when a node does not know it.
type invocation int

const (
	byModule invocation = iota // PUTALL.APPLY, the module's command
	bySHA                      // EVALSHA of the apply script
	byBody                     // EVAL of the apply script: the node learns it
)

// applyInvocation is the apply script's call on keys and args, invoked as via says.
func applyInvocation(c rueidis.Client, via invocation, keys, args []string) rueidis.Completed {
	switch via {
	case byModule:
		return c.B().Arbitrary("PUTALL.APPLY", strconv.Itoa(len(keys))).Keys(keys...).Args(args...).Build()
	case byBody:
		return c.B().Eval().Script(applyLua.body).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	}
	return c.B().Evalsha().Sha1(applyLua.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// applyReply is an apply script's answer: what it reported besides the results, and the
// results, resultEntryBytes a write.
type applyReply struct {
	rev, replayed, unrecorded int64
	results                   []byte
}

// parseApplyReply reads an apply script's answer for n writes.
func parseApplyReply(msg rueidis.RedisMessage, n int) (applyReply, error) {
	a, err := msg.ToArray()
	if err == nil && len(a) == 1 {
		if code, _ := a[0].AsInt64(); code == -1 {
			return applyReply{}, fmt.Errorf("redisstore: %w", store.ErrRequestConflict)
		}
	}
	if err != nil || len(a) != 4 {
		return applyReply{}, fmt.Errorf("redisstore: the apply script answered %d values, not 4 (%v)", len(a), err)
	}
	var r applyReply
	var errs [4]error
	r.rev, errs[0] = a[0].AsInt64()
	r.replayed, errs[1] = a[1].AsInt64()
	r.unrecorded, errs[2] = a[2].AsInt64()
	r.results, errs[3] = a[3].AsBytes()
	if err := errors.Join(errs[:]...); err != nil || len(r.results) != resultEntryBytes*n {
		return applyReply{}, fmt.Errorf("redisstore: the apply script answered %d bytes of results for %d writes (%v)", len(r.results), n, err)
	}
	return r, nil
}

// result is the j-th write's code, the key's version before the call and the revision the
// write applied at (0 when it did not).
func (r applyReply) result(j int) (code store.Code, before, rev int64) {
	b := r.results[j*resultEntryBytes:]
	return store.Code(b[0]), int64(binary.BigEndian.Uint64(b[1:])), int64(binary.BigEndian.Uint64(b[9:]))
}

// fillResults turns group g's script reply into results, marking in applied the writes that
// applied (now or, replayed, earlier).
func fillResults(msg rueidis.RedisMessage, g group, writes []store.Write, results []store.Result, applied []bool) (applyReply, error) {
	reply, err := parseApplyReply(msg, len(g.idx))
	if err != nil {
		return applyReply{}, err
	}
	for j, i := range g.idx {
		code, before, rev := reply.result(j)
		r := store.Result{Code: code, Version: before}
		if code == store.OK {
			r.Created = before == 0 && !writes[i].Delete
			if rev != 0 {
				r.Version = rev
				applied[i] = true
			}
		}
		results[i] = r
	}
	return reply, nil
}

// runScripts sends one apply call per unit (PUTALL.APPLY when the engine uses the module, else
// or when the node lacks it EVALSHA, then EVAL for the units whose node did not know the script
// yet) in one round trip and, when replicas must confirm, after all of
// them one WAIT per slot they touch, on the same connections (a command list holding a blocking
// command goes to one dedicated connection per node, in order, so a WAIT counts every write
// before it on its node). It returns each unit's reply and error. A unit whose slot's WAIT
// confirms fewer than ReplicasAck replicas fails with store.ErrNotDurable: the write was
// applied on its master, but whether it survives a failover is unknown (the Observer hears how
// many writes were left so).
func (e *Engine) runScripts(ctx context.Context, units []unit, call func(invocation, unit) rueidis.Completed) ([]rueidis.RedisMessage, []error) {
	const op = "apply"
	replies := make([]rueidis.RedisMessage, len(units))
	errs := make([]error, len(units))
	todo := make([]int, len(units))
	via := make([]invocation, len(units))
	for i := range todo {
		todo[i] = i
		if !e.module {
			via[i] = bySHA
		}
	}
	for len(todo) > 0 {
		cmds := make([]rueidis.Completed, 0, 2*len(todo))
		for _, ui := range todo {
			cmds = append(cmds, call(via[ui], units[ui]))
		}
		var slots []int // the slots touched, in order of their first unit
		seen := make(map[int]bool)
		for _, ui := range todo {
			if s := units[ui].g.slot; !seen[s] {
				seen[s] = true
				slots = append(slots, s)
			}
		}
		var waited []int // the slots of the WAITs sent after the scripts, in order
		if e.replicasAck > 0 {
			waited = slots
			for _, s := range waited {
				cmds = append(cmds, e.client.B().Wait().Numreplicas(int64(e.replicasAck)).
					Timeout(e.ackTimeout.Milliseconds()).Build().SetSlot(revisionKey(s)))
			}
		}
		start := time.Now()
		res := e.client.DoMulti(ctx, cmds...)
		e.observer.RoundTrip(op, len(slots), time.Since(start))
		// A slot's WAIT failed; the Observer hears of it once a script of the slot applied.
		unacked := make(map[int]error)
		for w, s := range waited {
			if err := e.acked(res[len(todo)+w]); err != nil {
				unacked[s] = err
			}
		}
		heard := make(map[int]bool)
		var again []int
		for j, ui := range todo {
			slot := units[ui].g.slot
			msg, err := res[j].ToMessage()
			if err != nil {
				why := reason(err)
				e.observer.Failed(op, why)
				if why == "noscript" && via[ui] == bySHA || why == "nomodule" && via[ui] == byModule {
					via[ui]++ // so each unit is sent at most three times
					again = append(again, ui)
					continue
				}
				errs[ui] = fmt.Errorf("slot %d: %w", slot, refusal(err))
				continue
			}
			replies[ui] = msg
			if err := unacked[slot]; err != nil {
				if !heard[slot] {
					heard[slot] = true
					e.observer.Failed(op, "wait")
				}
				if n := appliedWrites(msg, len(units[ui].g.idx)); n > 0 {
					e.observer.Unconfirmed(n)
				}
				errs[ui] = fmt.Errorf("slot %d: %w", slot, err)
			}
		}
		todo = again
	}
	return replies, errs
}

// appliedWrites counts the writes of n an apply script's answer says applied, now or
// (replayed) before: those with a revision.
func appliedWrites(msg rueidis.RedisMessage, n int) int {
	reply, err := parseApplyReply(msg, n)
	if err != nil {
		return 0
	}
	applied := 0
	for j := range n {
		if _, _, rev := reply.result(j); rev != 0 {
			applied++
		}
	}
	return applied
}

// acked checks a WAIT's answer.
func (e *Engine) acked(r rueidis.RedisResult) error {
	n, err := r.AsInt64()
	if err != nil {
		return fmt.Errorf("%w: outcome unknown: WAIT failed: %v", store.ErrNotDurable, err)
	}
	if n < int64(e.replicasAck) {
		return fmt.Errorf("%w: outcome unknown: %d of %d replicas confirmed the write within %v",
			store.ErrNotDurable, n, e.replicasAck, e.ackTimeout)
	}
	return nil
}

// refusals are the first words of the errors with which Redis refuses a command before
// running it: the cluster is down, the node is out of memory (also a script's first write),
// its master is down, a slot is migrating, the node is loading its data or is a replica, or a
// script is running too long. Nothing of the command was applied.
var refusals = map[string]bool{
	"CLUSTERDOWN": true, "OOM": true, "MASTERDOWN": true, "TRYAGAIN": true,
	"LOADING": true, "READONLY": true, "BUSY": true,
}

// refusal wraps err with store.ErrRefused when it is one of Redis's refusals.
func refusal(err error) error {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return err
	}
	if word, _, _ := strings.Cut(re.Error(), " "); refusals[word] {
		return fmt.Errorf("%w: %w", store.ErrRefused, err)
	}
	return err
}

// reason names a failed command's error for Observer.Failed.
func reason(err error) string {
	re, ok := rueidis.IsRedisErr(err)
	switch {
	case !ok:
		return "connection"
	case re.IsNoScript():
		return "noscript"
	case strings.HasPrefix(strings.TrimPrefix(re.Error(), "ERR "), "unknown command"):
		return "nomodule" // the only command the engine sends that a node may not know
	}
	if word, _, _ := strings.Cut(re.Error(), " "); refusals[word] {
		return strings.ToLower(word)
	}
	return "error"
}

// failure is the error of a write some of whose script calls failed. A failure of the
// connection (or of the context) leaves the outcome unknown, and so does any failure of a
// call spanning slots, some of which may have applied. A one-slot call Redis refused
// (store.ErrRefused) or whose script failed wrote nothing.
func (e *Engine) failure(err error, spansSlots bool) error {
	if errors.Is(err, store.ErrNotDurable) {
		return err
	}
	if !spansSlots && errors.Is(err, store.ErrRefused) {
		return fmt.Errorf("redisstore: nothing was written: %w", err)
	}
	var re *rueidis.RedisError
	if !spansSlots && errors.As(err, &re) {
		return fmt.Errorf("redisstore: nothing was written: %w", err)
	}
	return fmt.Errorf("%w: outcome unknown: %v", store.ErrNotDurable, err)
}

func (e *Engine) seen(rev int64) {
	for {
		cur := e.revision.Load()
		if rev <= cur || e.revision.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// GetAll implements store.Engine: each slot's keys are read by one MGET with the slot's
// counter, so as of that slot's revision. A key may be named more than once.
func (e *Engine) GetAll(ctx context.Context, keys []string, items []store.Item) (int64, error) {
	if len(items) != len(keys) {
		return 0, fmt.Errorf("redisstore: %d items for %d keys", len(items), len(keys))
	}
	if len(keys) == 0 {
		return 0, nil
	}
	groups := groupBySlot(len(keys), func(i int) string { return keys[i] })
	raw, err := e.read(ctx, groups, func(i int) string { return keys[i] })
	if err != nil {
		return 0, fmt.Errorf("redisstore: read: %w", err)
	}
	var rev int64
	for gi, g := range groups {
		r, err := fillItems(raw[gi], g, items)
		if err != nil {
			return 0, err
		}
		e.seen(r)
		rev = r
	}
	if len(groups) > 1 {
		rev = 0
	}
	return rev, nil
}

// read sends, in one round trip, one MGET per group of the group's slot counter and its keys
// (key(i) is the key at index i), and returns each group's reply. Every key of an MGET is in one
// slot, so Redis reads them in one step: as of the slot's revision.
func (e *Engine) read(ctx context.Context, groups []group, key func(int) string) ([]rueidis.RedisMessage, error) {
	cmds := make(rueidis.Commands, len(groups))
	for gi, g := range groups {
		ks := make([]string, 0, len(g.idx)+1)
		ks = append(ks, revisionKey(g.slot))
		for _, i := range g.idx {
			ks = append(ks, dataKey(key(i)))
		}
		cmds[gi] = e.client.B().Mget().Key(ks...).Build()
	}
	start := time.Now()
	res := e.client.DoMulti(ctx, cmds...)
	e.observer.RoundTrip("read", len(groups), time.Since(start))
	replies := make([]rueidis.RedisMessage, len(groups))
	var errs []error
	for gi, r := range res {
		msg, err := r.ToMessage()
		if err != nil {
			e.observer.Failed("read", reason(err))
			errs = append(errs, fmt.Errorf("slot %d: %w", groups[gi].slot, refusal(err)))
			continue
		}
		replies[gi] = msg
	}
	return replies, errors.Join(errs...)
}

// fillItems turns group g's MGET reply (the slot's counter, then the entries) into items and
// returns the slot's revision.
func fillItems(reply rueidis.RedisMessage, g group, items []store.Item) (int64, error) {
	a, err := reply.ToArray()
	if err != nil || len(a) != 1+len(g.idx) {
		return 0, fmt.Errorf("redisstore: MGET answered %d values for %d keys (%v)", len(a), len(g.idx), err)
	}
	var rev int64
	if !a[0].IsNil() {
		if rev, err = a[0].AsInt64(); err != nil {
			return 0, fmt.Errorf("redisstore: a slot's revision: %w", err)
		}
	}
	for j, i := range g.idx {
		if a[1+j].IsNil() {
			items[i] = store.Item{}
			continue
		}
		b, err := a[1+j].AsBytes()
		if err != nil {
			return 0, fmt.Errorf("redisstore: a key's entry: %w", err)
		}
		if items[i], err = decodeEntry(b); err != nil {
			return 0, err
		}
	}
	return rev, nil
}

// Unrecorded counts the writes of idempotent calls that applied without being recorded, their
// record having reached Options.MaxRecordBytes: a retry of those runs them again.
func (e *Engine) Unrecorded() uint64 { return e.unrecorded.Load() }

// WaitsForDurability implements store.Engine: Apply waits for replicas when ReplicasAck > 0.
func (e *Engine) WaitsForDurability() bool { return e.replicasAck > 0 }

// Stats implements store.Engine: the highest revision this process has seen; Redis counts the
// keys and bounds the memory, not this engine.
func (e *Engine) Stats() store.Stats { return store.Stats{Revision: e.revision.Load()} }

// Nodes is how many Redis nodes the engine's client holds a connection to now: every master,
// and the replicas the cluster reported healthy at the client's last refresh of its slot map.
func (e *Engine) Nodes() int { return len(e.client.Nodes()) }

// Close implements store.Engine.
func (e *Engine) Close() error {
	e.client.Close()
	return nil
}
