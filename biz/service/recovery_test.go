package service

import (
	"context"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/store"
	"github.com/putallkv/putallkv/pkg/wal"
)

// durableService opens a durable store in dir and a service over it, recovering idempotency
// records; snapshot takes a snapshot through the store.
func durableService(t *testing.T, dir string, clock *testClock) (*Service, *store.Durable) {
	t.Helper()
	rec := NewRecovery()
	var svc *Service
	engine, err := store.OpenDurable(store.DurableOptions{
		Options:      store.Options{Shards: 4, Now: clock.now},
		Dir:          dir,
		WAL:          wal.Options{Sync: wal.SyncNone},
		Recovered:    rec.Add,
		SnapshotTags: func() [][]byte { return svc.SnapshotTags() },
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err = New(engine, Options{
		Limits:            testLimits,
		IdempotencyWindow: time.Hour,
		Recovery:          rec,
		Now:               clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, engine
}

func TestIdempotencySurvivesRestart(t *testing.T) {
	for _, viaSnapshot := range []bool{false, true} {
		name := "journal"
		if viaSnapshot {
			name = "snapshot"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			clock := &testClock{}
			clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			ctx := context.Background()
			s, engine := durableService(t, dir, clock)

			put := &kv.PutRequest{Key: "p", Value: []byte("v"), RequestId: new("r-put")}
			putAll := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("r-all"), Entries: []*kv.Entry{
				entry("a", "1"), {Key: "p", Value: []byte("x"), ExpectedVersion: new(int64(0))}, entry("b", "1")}}
			del := &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("r-del"),
				Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "nope"}}}
			p1, err1 := s.Put(ctx, put)
			a1, err2 := s.PutAll(ctx, putAll)
			d1, err3 := s.DeleteAll(ctx, del)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatal(err1, err2, err3)
			}
			if viaSnapshot {
				if err := engine.Snapshot(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := engine.Close(); err != nil {
				t.Fatal(err)
			}

			s, engine = durableService(t, dir, clock)
			defer engine.Close()
			p2, err := s.Put(ctx, put)
			if err != nil || !p2.Replayed || p2.Version != p1.Version || p2.Created != p1.Created {
				t.Fatalf("Put replay after restart = %+v, %v; first %+v", p2, err, p1)
			}
			a2, err := s.PutAll(ctx, putAll)
			if err != nil || !a2.Replayed || a2.Revision != a1.Revision || a2.Applied != a1.Applied || len(a2.Results) != 3 {
				t.Fatalf("PutAll replay after restart = %+v, %v; first %+v", a2, err, a1)
			}
			for i := range a1.Results {
				if *a2.Results[i] != *a1.Results[i] {
					t.Errorf("result %d: %+v, first %+v", i, a2.Results[i], a1.Results[i])
				}
			}
			d2, err := s.DeleteAll(ctx, del)
			if err != nil || !d2.Replayed || d2.Revision != d1.Revision || d2.Results[1].Code != kv.ErrorCode_NOT_FOUND {
				t.Fatalf("DeleteAll replay after restart = %+v, %v", d2, err)
			}
			_, err = s.Put(ctx, &kv.PutRequest{Key: "p", Value: []byte("other"), RequestId: new("r-put")})
			wantCode(t, err, kv.ErrorCode_IDEMPOTENCY_CONFLICT)
			if rev := engine.Stats().Revision; rev != d1.Revision {
				t.Fatalf("replays wrote: revision %d, want %d", rev, d1.Revision)
			}

			// Past the window, recovered records are forgotten too.
			if err := engine.Close(); err != nil {
				t.Fatal(err)
			}
			clock.advance(2 * time.Hour)
			s, engine = durableService(t, dir, clock)
			defer engine.Close()
			p3, err := s.Put(ctx, put)
			if err != nil || p3.Replayed {
				t.Fatalf("Put after the window = %+v, %v; want a fresh write", p3, err)
			}
		})
	}
}

func TestParseTagRejectsGarbage(t *testing.T) {
	k := &idemKey{method: "PutAll", id: "x", createdMs: 5}
	good := k.tag(2, 5)
	if got, off, total, rest, err := parseTag(good); err != nil || got != *k || off != 2 || total != 5 || len(rest) != 0 {
		t.Fatalf("parseTag(tag) = %+v %d %d %v", got, off, total, err)
	}
	for i := range good {
		if _, _, _, _, err := parseTag(good[:i]); err == nil {
			t.Errorf("a tag cut at %d parsed", i)
		}
	}
}

// A BEST_EFFORT call that admission stopped partway is answered (its first chunks OK, the rest
// RESOURCE_EXHAUSTED) and remembered; after a restart its retry must still be replayed, not
// apply the first chunks a second time.
func TestCutShortCallReplaysAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{}
	ctx := context.Background()
	s, engine := durableService(t, dir, clock)
	s.SetAdmission(AdmissionSettings{Rate: 1000, Burst: 2, MaxWait: 0, MaxChunk: 1})
	req := &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("r-cut"),
		Entries: []*kv.Entry{entry("a", "1"), entry("b", "1"), entry("c", "1")}}
	first, err := s.PutAll(ctx, req)
	if err != nil || first.Applied != 2 || first.Results[2].Code != kv.ErrorCode_RESOURCE_EXHAUSTED {
		t.Fatalf("first call = %+v, %v; want a, b applied and c not reached", first, err)
	}
	if err := engine.Close(); err != nil {
		t.Fatal(err)
	}

	s, engine = durableService(t, dir, clock)
	defer engine.Close()
	again, err := s.PutAll(ctx, req)
	if err != nil || !again.Replayed || again.Revision != first.Revision || again.Applied != first.Applied {
		t.Fatalf("retry after restart = %+v, %v; want the first answer %+v replayed", again, err, first)
	}
	for i, st := range again.Results {
		if want := first.Results[i]; st.Key != want.Key || st.Code != want.Code || st.Version != want.Version {
			t.Errorf("result %d = %+v; first %+v", i, st, want)
		}
	}
	if rev := engine.Stats().Revision; rev != first.Revision {
		t.Fatalf("the replay wrote: revision %d, want %d", rev, first.Revision)
	}
}
