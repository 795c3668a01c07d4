// Package logbridge sends the log lines of the libraries putallkv is built on (Kitex's klog,
// Hertz's hlog, netpoll, bytedance/gopkg's goroutine pool, and the standard library's log
// package) into the server's own slog.Logger, so the process writes one stream in one format:
// with log.format json, every line is JSON, and log.level applies to them all.
package logbridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"

	gopkglogger "github.com/bytedance/gopkg/util/logger"
	"github.com/cloudwego/hertz/pkg/common/hlog"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/netpoll"
)

// Install makes l the destination of every library logger, each line marked with a
// "component" attribute (kitex, hertz, netpoll, gopool; the standard log package's lines go to
// l as they are). The libraries' loggers are process-wide and not safe to change while in use:
// call Install once, at the start of main, before any server starts.
func Install(l *slog.Logger) {
	klog.SetLogger(New[klog.Level](l.With("component", "kitex")))
	hlog.SetLogger(New[hlog.Level](l.With("component", "hertz")))
	gopkglogger.SetDefaultLogger(New[klog.Level](l.With("component", "gopool")))
	netpoll.SetLoggerOutput(&lineWriter{l: l.With("component", "netpoll"), level: slog.LevelError})
	slog.SetDefault(l) // and with it the standard log package, at level info
}

// Levels of the libraries' loggers in slog's terms. klog and hlog share the numbering Trace=0
// to Fatal=6; Notice falls between info and warn, Trace below debug and Fatal above error, the
// gaps slog leaves for such levels.
var levels = [...]slog.Level{
	slog.LevelDebug - 4, // Trace
	slog.LevelDebug,     // Debug
	slog.LevelInfo,      // Info
	slog.LevelInfo + 2,  // Notice
	slog.LevelWarn,      // Warn
	slog.LevelError,     // Error
	slog.LevelError + 4, // Fatal
}

// Level is the level type of klog or hlog.
type Level interface{ klog.Level | hlog.Level }

// Logger is a klog.FullLogger (Logger[klog.Level]) or an hlog.FullLogger (Logger[hlog.Level])
// writing to a slog.Logger. A line is written when both its level is at least the one
// SetLevel set (trace, everything, by default) and the slog.Logger's handler is enabled for it.
// As klog's and hlog's own loggers do, Fatal and its variants exit the process after logging.
type Logger[L Level] struct {
	l     *slog.Logger
	floor atomic.Int64 // the least severe library level written (SetLevel)
}

// New returns a Logger writing to l.
func New[L Level](l *slog.Logger) *Logger[L] {
	return &Logger[L]{l: l}
}

// Compile-time checks that the instantiations satisfy the libraries' interfaces.
var (
	_ klog.FullLogger    = (*Logger[klog.Level])(nil)
	_ hlog.FullLogger    = (*Logger[hlog.Level])(nil)
	_ gopkglogger.Logger = (*Logger[klog.Level])(nil)
)

// SetLevel sets the least severe level written.
func (g *Logger[L]) SetLevel(lv L) { g.floor.Store(int64(lv)) }

// SetOutput does nothing: the output is the slog.Logger's.
func (g *Logger[L]) SetOutput(io.Writer) {}

// The library levels, klog's and hlog's numbering alike.
const (
	trace = iota
	debug
	info
	notice
	warn
	errorLevel
	fatal // after which the process exits
)

// emit writes one line at the library level lv, formatting it only if it is written.
func (g *Logger[L]) emit(ctx context.Context, lv int, format string, v []any) {
	if lv < 0 || lv >= len(levels) {
		lv = errorLevel // an unknown level: treat it as an error rather than lose the line
	}
	level := levels[lv]
	if int64(lv) >= g.floor.Load() && g.l.Enabled(ctx, level) {
		msg := fmt.Sprint(v...)
		if format != "" {
			msg = fmt.Sprintf(format, v...)
		}
		g.l.Log(ctx, level, msg)
	}
	if lv == fatal {
		os.Exit(1)
	}
}

// Trace and the methods below write v (Sprint) or format (Sprintf) at their level; see Logger.
func (g *Logger[L]) Trace(v ...any)  { g.emit(context.Background(), trace, "", v) }
func (g *Logger[L]) Debug(v ...any)  { g.emit(context.Background(), debug, "", v) }
func (g *Logger[L]) Info(v ...any)   { g.emit(context.Background(), info, "", v) }
func (g *Logger[L]) Notice(v ...any) { g.emit(context.Background(), notice, "", v) }
func (g *Logger[L]) Warn(v ...any)   { g.emit(context.Background(), warn, "", v) }
func (g *Logger[L]) Error(v ...any)  { g.emit(context.Background(), errorLevel, "", v) }
func (g *Logger[L]) Fatal(v ...any)  { g.emit(context.Background(), fatal, "", v) }

func (g *Logger[L]) Tracef(f string, v ...any)  { g.emit(context.Background(), trace, f, v) }
func (g *Logger[L]) Debugf(f string, v ...any)  { g.emit(context.Background(), debug, f, v) }
func (g *Logger[L]) Infof(f string, v ...any)   { g.emit(context.Background(), info, f, v) }
func (g *Logger[L]) Noticef(f string, v ...any) { g.emit(context.Background(), notice, f, v) }
func (g *Logger[L]) Warnf(f string, v ...any)   { g.emit(context.Background(), warn, f, v) }
func (g *Logger[L]) Errorf(f string, v ...any)  { g.emit(context.Background(), errorLevel, f, v) }
func (g *Logger[L]) Fatalf(f string, v ...any)  { g.emit(context.Background(), fatal, f, v) }

func (g *Logger[L]) CtxTracef(ctx context.Context, f string, v ...any)  { g.emit(ctx, trace, f, v) }
func (g *Logger[L]) CtxDebugf(ctx context.Context, f string, v ...any)  { g.emit(ctx, debug, f, v) }
func (g *Logger[L]) CtxInfof(ctx context.Context, f string, v ...any)   { g.emit(ctx, info, f, v) }
func (g *Logger[L]) CtxNoticef(ctx context.Context, f string, v ...any) { g.emit(ctx, notice, f, v) }
func (g *Logger[L]) CtxWarnf(ctx context.Context, f string, v ...any)   { g.emit(ctx, warn, f, v) }
func (g *Logger[L]) CtxErrorf(ctx context.Context, f string, v ...any)  { g.emit(ctx, errorLevel, f, v) }
func (g *Logger[L]) CtxFatalf(ctx context.Context, f string, v ...any)  { g.emit(ctx, fatal, f, v) }

// lineWriter turns the lines a log.Logger writes (netpoll's, which has no levels and prefixes
// the date and time) into records of level, without that prefix.
type lineWriter struct {
	l     *slog.Logger
	level slog.Level
}

// stdPrefix is the length of the date and time log.LstdFlags puts first: "2006/01/02 15:04:05 ".
const stdPrefix = len("2006/01/02 15:04:05 ")

func (w *lineWriter) Write(p []byte) (int, error) {
	line := bytes.TrimRight(p, "\n")
	if len(line) > stdPrefix && line[4] == '/' && line[stdPrefix-1] == ' ' {
		line = line[stdPrefix:]
	}
	w.l.Log(context.Background(), w.level, string(line))
	return len(p), nil
}
