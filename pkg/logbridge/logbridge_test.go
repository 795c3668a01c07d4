package logbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"

	gopkglogger "github.com/bytedance/gopkg/util/logger"
	"github.com/cloudwego/hertz/pkg/common/hlog"
	"github.com/cloudwego/kitex/pkg/klog"
)

// record is a JSON log line as slog's JSON handler writes it.
type record struct {
	Level     string `json:"level"`
	Msg       string `json:"msg"`
	Component string `json:"component"`
}

// jsonLogger returns a JSON slog.Logger at level into a buffer, and a function returning the
// records written so far, failing the test on a line that is not JSON.
func jsonLogger(t *testing.T, level slog.Level) (*slog.Logger, func() []record) {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	return l, func() []record {
		var rs []record
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line == "" {
				continue
			}
			var r record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("not a JSON line: %q", line)
			}
			rs = append(rs, r)
		}
		return rs
	}
}

// TestLevels writes one line at each library level, through every kind of method, and checks
// the slog level each arrives at.
func TestLevels(t *testing.T) {
	wantLevels := []string{"DEBUG-4", "DEBUG", "INFO", "INFO+2", "WARN", "ERROR"}
	t.Run("klog", func(t *testing.T) {
		l, records := jsonLogger(t, slog.LevelDebug-4)
		k := New[klog.Level](l)
		k.Trace("a")
		k.Debugf("%s", "b")
		k.CtxInfof(context.Background(), "%s", "c")
		k.Notice("d")
		k.Warnf("%d", 5)
		k.CtxErrorf(context.Background(), "f%s", "!")
		checkLevels(t, records(), wantLevels, []string{"a", "b", "c", "d", "5", "f!"})
	})
	t.Run("hlog", func(t *testing.T) {
		l, records := jsonLogger(t, slog.LevelDebug-4)
		h := New[hlog.Level](l)
		h.CtxTracef(context.Background(), "a")
		h.Debug("b")
		h.Infof("c")
		h.CtxNoticef(context.Background(), "d")
		h.Warn("e", 1)
		h.Error("f")
		checkLevels(t, records(), wantLevels, []string{"a", "b", "c", "d", "e1", "f"})
	})
}

func checkLevels(t *testing.T, got []record, levels, msgs []string) {
	t.Helper()
	if len(got) != len(levels) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(levels), got)
	}
	for i, r := range got {
		if r.Level != levels[i] || r.Msg != msgs[i] {
			t.Errorf("record %d = %s %q, want %s %q", i, r.Level, r.Msg, levels[i], msgs[i])
		}
	}
}

// TestLevelFilters checks both filters: the slog handler's level (log.level) and the
// library's own SetLevel.
func TestLevelFilters(t *testing.T) {
	l, records := jsonLogger(t, slog.LevelWarn)
	k := New[klog.Level](l)
	k.Info("dropped by the handler")
	k.Notice("dropped by the handler")
	k.Warn("kept")
	k.SetLevel(klog.LevelError)
	k.Warn("dropped by SetLevel")
	k.Error("kept too")
	checkLevels(t, records(), []string{"WARN", "ERROR"}, []string{"kept", "kept too"})
}

// TestInstall routes every library's logger and the standard log package into one JSON
// logger and checks each line arrives as JSON, marked with its component.
func TestInstall(t *testing.T) {
	prev := slog.Default()
	defer slog.SetDefault(prev)
	l, records := jsonLogger(t, slog.LevelInfo)
	Install(l)
	klog.Infof("kitex line")
	hlog.SystemLogger().Warnf("hertz line") // as Hertz itself logs, with its "HERTZ: " prefix
	hlog.Debugf("below the level")
	gopkglogger.CtxErrorf(context.Background(), "pool line")
	log.Printf("standard line")
	(&lineWriter{l: l.With("component", "netpoll"), level: slog.LevelError}).Write([]byte("2026/01/02 15:04:05 NETPOLL: poller failed\n"))

	want := []record{
		{"INFO", "kitex line", "kitex"},
		{"WARN", "HERTZ: hertz line", "hertz"},
		{"ERROR", "pool line", "gopool"},
		{"INFO", "standard line", ""},
		{"ERROR", "NETPOLL: poller failed", "netpoll"},
	}
	got := records()
	if len(got) != len(want) {
		t.Fatalf("records %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
