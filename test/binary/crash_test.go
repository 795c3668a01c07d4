package binary

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// The crash test drives the real binary with wal.fsync=always from several clients, kills it
// with SIGKILL at a random moment, restarts it on the same data directory and checks that
//   - every acknowledged write is there, at its version (or overwritten by a later one);
//   - the history of atomic PutAlls and GetAlls over a small key set, across the kill, is
//     linearizable (porcupine), with calls that failed or timed out free to have happened
//     or not; a half-applied batch, a lost acknowledged write or a read that saw a write the
//     crash took back all make it illegal.
// Some rounds kill it while snapshots are being taken.

const linKeys = 6

func linKey(i int) string { return fmt.Sprint("lin/", i) }

// linState is the values of the linearizability keys ("" = absent).
type linState [linKeys]string

type linInput struct {
	write  bool
	keys   []int
	value  string // a write puts this value into every key of keys
	client int
}

type linOutput struct {
	values  []string // a read's values, in keys order
	unknown bool     // the call failed: it may or may not have happened
}

var linModel = porcupine.Model{
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(linState), input.(linInput), output.(linOutput)
		if in.write {
			for _, k := range in.keys {
				s[k] = in.value
			}
			return true, s
		}
		if out.unknown {
			return true, s
		}
		for i, k := range in.keys {
			if s[k] != out.values[i] {
				return false, s
			}
		}
		return true, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if in.write {
			return fmt.Sprintf("c%d put %v=%s unknown=%v", in.client, in.keys, in.value, out.unknown)
		}
		return fmt.Sprintf("c%d get %v -> %v", in.client, in.keys, out.values)
	},
}

// crashRound is one life of the server between start and SIGKILL.
type crashRound struct {
	t       *testing.T
	seed    uint64
	began   time.Time
	mu      sync.Mutex
	history []porcupine.Operation
	acked   map[string]ack // key -> the latest acknowledged write (by version)
	// prefix goes before every key the round writes (a hash tag keeps them in one slot of a
	// Redis Cluster).
	prefix string
}

type ack struct {
	version int64
	value   string
}

func (r *crashRound) now() int64 { return int64(time.Since(r.began)) }

func (r *crashRound) record(op porcupine.Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history = append(r.history, op)
}

// acknowledgeAll records the keys a PutAll of entries wrote with value, at their versions.
func (r *crashRound) acknowledgeAll(entries []*kv.Entry, resp *kv.PutAllResponse, value string) {
	statuses, err := kvclient.Statuses(entries, resp.Results, resp.Revision)
	if err != nil {
		r.t.Errorf("seed %d: %v", r.seed, err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range statuses {
		if a, ok := r.acked[st.Key]; st.Code == kv.ErrorCode_OK && (!ok || st.Version > a.version) {
			r.acked[st.Key] = ack{st.Version, value}
		}
	}
}

// readLin reads every linearizability key as one operation of the history.
func (r *crashRound) readLin(ctx context.Context, c *kvclient.Client, client int) error {
	in := linInput{keys: []int{0, 1, 2, 3, 4, 5}, client: client}
	keys := make([]string, linKeys)
	for i := range keys {
		keys[i] = r.prefix + linKey(i)
	}
	call := r.now()
	resp, err := c.GetAll(ctx, &kv.GetAllRequest{Keys: keys})
	ret := r.now()
	out := linOutput{unknown: err != nil}
	if err == nil {
		for _, it := range resp.Items {
			out.values = append(out.values, string(it.Value))
		}
	} else {
		ret = math.MaxInt64
	}
	r.record(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	return err
}

// drive runs one client until ctx ends: atomic PutAlls of random subsets of the
// linearizability keys, GetAlls of all of them, and BEST_EFFORT PutAlls of keys of its own.
func (r *crashRound) drive(ctx context.Context, c *kvclient.Client, client int, round int) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(round*100+client)))
	for op := 0; ctx.Err() == nil; op++ {
		switch rng.IntN(3) {
		case 0:
			_ = r.readLin(ctx, c, client)
		case 1:
			n := 2 + rng.IntN(linKeys-1)
			keys := rng.Perm(linKeys)[:n]
			value := fmt.Sprintf("r%d-c%d-o%d", round, client, op)
			req := &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC}
			for _, k := range keys {
				req.Entries = append(req.Entries, &kv.Entry{Key: r.prefix + linKey(k), Value: []byte(value)})
			}
			call := r.now()
			resp, err := c.PutAll(ctx, req)
			ret := r.now()
			if err != nil {
				ret = math.MaxInt64
			} else {
				r.acknowledgeAll(req.Entries, resp, value)
			}
			r.record(porcupine.Operation{ClientId: client,
				Input: linInput{write: true, keys: keys, value: value, client: client},
				Call:  call, Output: linOutput{unknown: err != nil}, Return: ret})
		default:
			value := fmt.Sprintf("be-r%d-c%d-o%d", round, client, op)
			req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT}
			for i := range 1 + rng.IntN(8) {
				req.Entries = append(req.Entries, &kv.Entry{Key: fmt.Sprintf("%sown/c%d/%d", r.prefix, client, rng.IntN(50)+i*50), Value: []byte(value)})
			}
			if resp, err := c.PutAll(ctx, req); err == nil {
				r.acknowledgeAll(req.Entries, resp, value)
			}
		}
	}
}

func TestCrashRecoveryLosesNoAcknowledgedWrite(t *testing.T) {
	server, _ := binaries(t)
	seed := rand.Uint64()
	if s := os.Getenv("CRASH_TEST_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (set CRASH_TEST_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	confFile := filepath.Join(t.TempDir(), "putallkv.yaml")
	acked := map[string]ack{}
	var init linState

	const rounds = 6
	for round := range rounds {
		withSnapshots := round >= rounds/2
		conf := baseConf + fmt.Sprintf("store:\n  data_dir: %s\nwal:\n  fsync: always\n  segment_bytes: 65536\n", dir)
		if withSnapshots {
			conf += "  snapshot_bytes: 131072\n"
		}
		p := startBinary(t, server, confFile, conf)
		discardLogs(p)
		c, err := kvclient.New([]string{p.rpc}, kvclient.WithRPCTimeout(3*time.Second), kvclient.WithRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		r := &crashRound{t: t, seed: seed, began: time.Now(), acked: acked}
		// The state this life starts from: what the last one ended with.
		checkAcked(t, c, acked, seed, round)
		if err := r.readLin(context.Background(), c, 0); err != nil {
			t.Fatalf("seed %d round %d: read after restart: %v", seed, round, err)
		}
		for i, v := range r.history[0].Output.(linOutput).values {
			init[i] = v
		}
		r.history = r.history[:0]

		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for client := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.drive(ctx, c, client, round)
			}()
		}
		if withSnapshots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				snapshotLoop(ctx, p.admin)
			}()
		}
		// Kill at a random moment, while the clients (and snapshots) are busy.
		killAfter := time.Duration(150+rng.IntN(600)) * time.Millisecond
		time.AfterFunc(killAfter, func() { _ = p.cmd.Process.Signal(syscall.SIGKILL) })
		_ = p.cmd.Wait()
		stop()
		wg.Wait()
		_ = c.Close()

		// Restart and read back what this life left, as the last operation of its history.
		p2 := startBinary(t, server, confFile, conf)
		c2, err := kvclient.New([]string{p2.rpc}, kvclient.WithRPCTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.readLin(context.Background(), c2, 0); err != nil {
			t.Fatalf("seed %d round %d: read after restart: %v", seed, round, err)
		}
		checkAcked(t, c2, acked, seed, round)
		_ = c2.Close()
		_ = p2.cmd.Process.Signal(syscall.SIGTERM)
		for range p2.logs {
		}
		_ = p2.cmd.Wait()

		res, took := checkLinearizable(init, r.history, linTimeout)
		t.Logf("round %d (snapshots %v): killed after %v, %d operations, %d keys acknowledged, linearizable: %s in %v",
			round, withSnapshots, killAfter, len(r.history), len(acked), res, took.Round(time.Millisecond))
		switch res {
		case porcupine.Illegal:
			t.Fatalf("seed %d round %d: the history across the kill is not linearizable", seed, round)
		case porcupine.Unknown:
			t.Fatalf("seed %d round %d: porcupine could not decide within %v whether the %d operations are linearizable; "+
				"an undecided history proves nothing", seed, round, linTimeout, len(r.history))
		}
		if t.Failed() {
			return
		}
	}
}

// linTimeout bounds the linearizability check of one round's history. A round's history is
// a few hundred operations, which porcupine decides in milliseconds; the bound is far above
// that so that only a history the check truly cannot decide reaches it.
const linTimeout = 2 * time.Minute

// checkLinearizable asks porcupine whether history, starting from the state init, is
// linearizable, and how long it took to answer: Ok, Illegal, or Unknown when timeout passed
// first.
func checkLinearizable(init linState, history []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, time.Duration) {
	model := linModel
	model.Init = func() any { return init }
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(model, history, timeout)
	return res, time.Since(start)
}

// checkAcked reads back every acknowledged write: each key must hold the acknowledged version
// and value, or a later version.
func checkAcked(t *testing.T, c *kvclient.Client, acked map[string]ack, seed uint64, round int) {
	t.Helper()
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		resp, err := c.GetAll(context.Background(), &kv.GetAllRequest{Keys: batch})
		if err != nil {
			t.Fatalf("seed %d round %d: GetAll: %v", seed, round, err)
		}
		for i, it := range resp.Items {
			a := acked[batch[i]]
			switch {
			case !it.Found:
				t.Errorf("seed %d round %d: acknowledged %s@%d lost", seed, round, batch[i], a.version)
			case it.Version < a.version:
				t.Errorf("seed %d round %d: %s at version %d, acknowledged %d", seed, round, batch[i], it.Version, a.version)
			case it.Version == a.version && string(it.Value) != a.value:
				t.Errorf("seed %d round %d: %s@%d holds %q, acknowledged %q", seed, round, batch[i], a.version, it.Value, a.value)
			}
		}
	}
}

// snapshotLoop asks the server at admin for snapshots, one after another, until ctx ends.
func snapshotLoop(ctx context.Context, admin string) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/admin/snapshot", strings.NewReader(""))
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}
