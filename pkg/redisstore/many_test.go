package redisstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/pkg/store"
)

// ApplyAll answers each batch as the Memory engine's Apply does alone, one after the other (a
// later batch sees an earlier one's writes), fails only the batches that fail (a repeated
// key, an atomic batch across slots), and sends every batch's scripts, and the WAITs after
// them, in one round trip.
func TestApplyAllAnswersAsApplyInOneRoundTrip(t *testing.T) {
	eachApplier(t, func(t *testing.T) {
		const tag = "{many}"
		rec := &recorder{trips: map[string]int{}, slots: map[string]int{}, failed: map[string]int{}}
		e := openEngine(t, Options{ReplicasAck: 1, Observer: rec})
		clearSlot(t, e, Slot(dataKey(tag)))
		for addr, n := range e.client.Nodes() { // so that no node answers NOSCRIPT
			if err := n.Do(context.Background(), n.B().ScriptLoad().Script(applyLua.body).Build()).Error(); err != nil {
				t.Fatalf("SCRIPT LOAD on %s: %v", addr, err)
			}
		}
		k := func(name string) string { return tag + name }
		inSlot := []store.Batch{
			{Mode: store.Atomic, Writes: []store.Write{put(k("a"), "1", store.AnyVersion), put(k("b"), "1", store.AnyVersion)}},
			{Mode: store.Atomic, Writes: []store.Write{put(k("c"), "1", 7)}},
			{Mode: store.BestEffort, Writes: []store.Write{put(k("a"), "2", 0), put(k("d"), "1", store.AnyVersion)}},
			{Mode: store.Atomic, Writes: []store.Write{put(k("e"), "1", store.AnyVersion), put(k("e"), "2", store.AnyVersion)}},
			{Mode: store.BestEffort, Writes: []store.Write{{Key: k("b"), Delete: true, ExpectedVersion: 1}}},
			{Mode: store.Atomic, Writes: []store.Write{put(k("a"), "3", 1), put(k("d"), "2", 2)}},
		}
		spread := keysInSlots(fresh(t), 3)
		batches := append(inSlot,
			store.Batch{Mode: store.Atomic, Writes: []store.Write{put(spread[0], "x", store.AnyVersion), put(spread[1], "x", store.AnyVersion)}},
			store.Batch{Mode: store.BestEffort, Writes: []store.Write{put(spread[0], "y", store.AnyVersion), put(spread[1], "y", store.AnyVersion), put(spread[2], "y", store.AnyVersion)}},
		)
		results := make([][]store.Result, len(batches))
		for i, b := range batches {
			results[i] = make([]store.Result, len(b.Writes))
		}
		outs, errs := make([]store.Outcome, len(batches)), make([]error, len(batches))
		e.ApplyAll(context.Background(), batches, results, outs, errs)

		ref, err := store.NewMemory(store.Options{Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer ref.Close()
		for i, b := range inSlot {
			want := make([]store.Result, len(b.Writes))
			wantOut, wantErr := ref.Apply(context.Background(), b, want)
			if !reflect.DeepEqual(results[i], want) || outs[i] != wantOut || fmt.Sprint(errs[i]) != fmt.Sprint(wantErr) {
				t.Errorf("batch %d: %v %v %v; want as Memory's Apply: %v %v %v", i, results[i], outs[i], errs[i], want, wantOut, wantErr)
			}
		}
		var cross *store.CrossSlotError
		if i := len(inSlot); !errors.As(errs[i], &cross) {
			t.Errorf("atomic batch across slots: %v; want a CrossSlotError", errs[i])
		}
		if i := len(inSlot) + 1; errs[i] != nil || outs[i].Applied != 3 {
			t.Errorf("best-effort batch across 3 slots: %v, %v; want 3 applied", outs[i], errs[i])
		}
		rec.mu.Lock()
		trips, slots, failed := rec.trips["apply"], rec.slots["apply"], len(rec.failed)
		rec.mu.Unlock()
		if trips != 1 || slots != 4 || failed != 0 {
			t.Errorf("%d round trips of %d slots, failures %v; want 1 of 4, none", trips, slots, rec.failed)
		}
		if _, items := getAll(t, e, k("a"), k("b"), k("d")); string(items[0].Value) != "3" || items[1].Found || string(items[2].Value) != "2" {
			t.Errorf("after ApplyAll: %v; want a=3, b deleted, d=2", items)
		}
	})
}

// An engine with Options.Module applies through PUTALL.APPLY; on masters that do not have the
// module loaded, it falls back to the script (the Observer hears "nomodule") and answers the
// same.
func TestModuleUsedAndScriptWhenMissing(t *testing.T) {
	rec := &recorder{trips: map[string]int{}, slots: map[string]int{}, failed: map[string]int{}}
	e := openEngine(t, Options{ReplicasAck: 1, Module: true, Observer: rec})
	keys := keysInSlots(fresh(t), 3)
	writes := func(v string) []store.Write {
		return []store.Write{put(keys[0], v, store.AnyVersion), put(keys[1], v, store.AnyVersion), put(keys[2], v, store.AnyVersion)}
	}
	before := rediscluster.CommandCalls(t, "putall.apply")
	if out, _ := apply(t, e, store.BestEffort, writes("1")...); out.Applied != 3 {
		t.Fatalf("through the module: %v; want 3 applied", out)
	}
	if got := rediscluster.CommandCalls(t, "putall.apply") - before; got != 3 {
		t.Fatalf("the masters ran PUTALL.APPLY %d times; want 3 (one per slot)", got)
	}

	ctx := context.Background()
	for addr, n := range e.client.Nodes() {
		mods, err := n.Do(ctx, n.B().ModuleList().Build()).ToArray()
		if err != nil || len(mods) != 1 {
			t.Fatalf("MODULE LIST on %s: %v %v; want the putallkv module", addr, mods, err)
		}
		m, err := mods[0].AsStrMap()
		if err != nil || m["name"] != "putallkv" || m["path"] == "" {
			t.Fatalf("MODULE LIST on %s: %v %v; want the putallkv module and its path", addr, m, err)
		}
		if err := n.Do(ctx, n.B().ModuleUnload().Name("putallkv").Build()).Error(); err != nil {
			t.Fatalf("MODULE UNLOAD on %s: %v", addr, err)
		}
		t.Cleanup(func() {
			if err := n.Do(ctx, n.B().ModuleLoad().Path(m["path"]).Build()).Error(); err != nil {
				t.Errorf("MODULE LOAD on %s: %v", addr, err)
			}
		})
	}
	out, results := apply(t, e, store.BestEffort, writes("2")...)
	if out.Applied != 3 || results[0].Created || results[0].Version <= 0 {
		t.Fatalf("without the module: %v %v; want 3 applied, none created", out, results)
	}
	rec.mu.Lock()
	nomodule := rec.failed["apply/nomodule"]
	rec.mu.Unlock()
	if nomodule != 3 {
		t.Errorf("the Observer heard %d nomodule failures; want 3", nomodule)
	}
	if _, items := getAll(t, e, keys...); string(items[2].Value) != "2" {
		t.Errorf("after the fallback: %v; want the second values", items)
	}
}

// PUTALL.APPLY answers a malformed call, whoever sends it, with an error and writes nothing;
// the master keeps serving.
func TestModuleRefusesMalformedCalls(t *testing.T) {
	e := openEngine(t, Options{Module: true})
	ctx := context.Background()
	key := fresh(t) + "{bad}"
	counter, data := revisionKey(Slot(dataKey(key))), dataKey(key)
	tail := entryTail(0, []byte("v"))
	cases := []struct {
		name string
		args []string
	}{
		{"numkeys not a number", []string{"x", counter}},
		{"numkeys below 3", []string{"2", counter, counter, "a", "", "0", "0", "", ""}},
		{"numkeys past the arguments", []string{"1000000", counter, counter, data}},
		{"too few arguments", []string{"3", counter, counter, data, "a", "", "0", "0", ""}},
		{"too many arguments", []string{"3", counter, counter, data, "a", "", "0", "0", "", "", tail, tail}},
		{"record bound not a number", []string{"3", counter, counter, data, "a", "", "0", "many", "", "", tail}},
		{"indexes short", []string{"3", counter, counter, data, "a", "digest", "0", "100", "\x00\x00", "", tail}},
		{"record expiry not a number", []string{"3", counter, counter, data, "a", "digest", "soon", "100", "\x00\x00\x00\x00", "", tail}},
		{"conditions short", []string{"3", counter, counter, data, "a", "", "0", "0", "", "0123456789abcde", tail}},
		{"tail without its expiry", []string{"3", counter, counter, data, "a", "", "0", "0", "", "", "abc"}},
		{"record of the wrong type", []string{"3", counter, counter, data, "a", "digest", "0", "100", "\x00\x00\x00\x00", "", tail}},
	}
	for _, c := range cases {
		cmd := e.client.B().Arbitrary("PUTALL.APPLY", c.args[0]).Keys(c.args[1]).Args(c.args[2:]...).Build()
		if c.name == "record of the wrong type" { // a record key that holds a hash
			rk := counter + "h"
			if err := e.client.Do(ctx, e.client.B().Hset().Key(rk).FieldValue().FieldValue("f", "v").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			cmd = e.client.B().Arbitrary("PUTALL.APPLY", "3").Keys(counter, rk).Args(c.args[3:]...).Build()
		}
		err := e.client.Do(ctx, cmd).Error()
		want := "PUTALL.APPLY: "
		if c.name == "record of the wrong type" {
			want = "WRONGTYPE"
		}
		if _, ok := rueidis.IsRedisErr(err); !ok || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want the module's error reply (%s)", c.name, err, want)
		}
	}
	if _, items := getAll(t, e, key); items[0].Found {
		t.Errorf("a malformed call wrote %v", items[0])
	}
	if out, _ := apply(t, e, store.Atomic, put(key, "ok", store.AnyVersion)); out.Applied != 1 {
		t.Errorf("after the malformed calls: %v; want the write applied", out)
	}
}
