package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// invocation is a parsed command line: where to call, how to print, and what to send.
type invocation struct {
	addr    string
	timeout time.Duration
	json    bool
	token   string
	tls     tlsFlags
	cmd     command
}

// register declares the global flags on fs. They are declared on the subcommand's flag set
// too, so that they may also follow the command; each declaration's default is the value so
// far, so a later one does not reset an earlier one.
func (inv *invocation) register(fs *flag.FlagSet) {
	fs.StringVar(&inv.addr, "addr", inv.addr, "server `HOST:PORT`")
	fs.Var(durationFlag{&inv.timeout}, "timeout", "bound on the whole command")
	fs.BoolVar(&inv.json, "json", inv.json, "print JSON lines")
	fs.StringVar(&inv.token, "token", inv.token, "bearer `TOKEN` sent with the call (default $PUTALLKV_TOKEN)")
	inv.tls.register(fs)
}

// builders parse each subcommand's arguments (fs already holds the global flags).
var builders = map[string]func(fs *flag.FlagSet, args []string, stdin io.Reader) (command, error){
	"put":     parsePut,
	"get":     parseGet,
	"del":     parseDel,
	"putall":  parsePutAll,
	"getall":  parseGetAll,
	"delall":  parseDelAll,
	"scan":    parseScan,
	"export":  parseExport,
	"load":    parseLoad,
	"import":  parseImport,
	"migrate": parseMigrate,
}

// parse parses a whole command line; stdin is read only by putall without FILE. Every error
// it returns is a usage error; flag.ErrHelp asks for the usage text.
func parse(args []string, stdin io.Reader) (*invocation, error) {
	inv := &invocation{addr: os.Getenv("PUTALLKV_ADDR"), timeout: 5 * time.Second, token: os.Getenv("PUTALLKV_TOKEN")}
	if inv.addr == "" {
		inv.addr = "127.0.0.1:8888"
	}
	top := newFlagSet("putallctl")
	inv.register(top)
	if err := top.Parse(args); err != nil {
		return nil, err
	}
	if top.NArg() == 0 {
		return nil, errors.New("no command")
	}
	name := top.Arg(0)
	if name == "help" {
		return nil, flag.ErrHelp
	}
	build, ok := builders[name]
	if !ok {
		return nil, fmt.Errorf("unknown command %q", name)
	}
	fs := newFlagSet(name)
	inv.register(fs)
	cmd, err := build(fs, top.Args()[1:], stdin)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, _, err := net.SplitHostPort(inv.addr); err != nil {
		return nil, fmt.Errorf("--addr %q: %w", inv.addr, err)
	}
	if inv.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive, got %v", inv.timeout)
	}
	if err := inv.tls.check(); err != nil {
		return nil, err
	}
	inv.cmd = cmd
	return inv, nil
}

// newFlagSet returns a flag set that reports errors instead of printing them, so run
// prints one line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFile parses args with fs (parseInterleaved) for a command of one positional argument,
// a FILE, and returns it.
func parseFile(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("want FILE, got %d arguments", len(pos))
	}
	return pos[0], nil
}

// parseInterleaved parses args with fs, allowing flags between and after the positional
// arguments, which it returns in order. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs stopped at a positional argument, or just after "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// durationFlag is a duration flag whose error for a bare number suggests the unit it lacks
// ("--timeout 5": did you mean 5s?), where flag.Duration says only "parse error".
type durationFlag struct{ p *time.Duration }

func (d durationFlag) String() string {
	if d.p == nil {
		return ""
	}
	return d.p.String()
}

func (d durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err == nil {
		*d.p = v
		return nil
	}
	if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
		return fmt.Errorf("a duration needs a unit: did you mean %ss?", s)
	}
	return errors.New("want a duration such as 5s, 500ms or 1m30s")
}

// optionalInt is an integer flag that records whether it was given, for optional fields.
type optionalInt struct{ p *int64 }

func (o *optionalInt) String() string {
	if o.p == nil {
		return ""
	}
	return strconv.FormatInt(*o.p, 10)
}

func (o *optionalInt) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	o.p = &v
	return nil
}

// writeFlags are the flags of the write commands; each command declares the ones it takes.
type writeFlags struct {
	requestID string
	expect    optionalInt
	create    bool
	ttl       optionalInt
	atomic    bool
}

func (w *writeFlags) declareRequestID(fs *flag.FlagSet) {
	fs.StringVar(&w.requestID, "request-id", "", "idempotency key: a retry with the same `ID` writes nothing twice")
}

func (w *writeFlags) declareExpect(fs *flag.FlagSet) {
	fs.Var(&w.expect, "expect", "the key's current version must be `N` (0: the key must not exist)")
}

// requestIDField returns the request_id field: nil when no id was given.
func (w *writeFlags) requestIDField() *string {
	if w.requestID == "" {
		return nil
	}
	return &w.requestID
}

// mode returns the batch mode the flags ask for.
func (w *writeFlags) mode() kv.WriteMode {
	if w.atomic {
		return kv.WriteMode_ATOMIC
	}
	return kv.WriteMode_BEST_EFFORT
}

func parsePut(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	var w writeFlags
	w.declareRequestID(fs)
	w.declareExpect(fs)
	fs.BoolVar(&w.create, "create", false, "write only if the key does not exist (--expect 0)")
	fs.Var(&w.ttl, "ttl-ms", "expire the key `N` milliseconds after the write")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 2 {
		return nil, fmt.Errorf("want KEY VALUE, got %d arguments", len(pos))
	}
	if w.create {
		if w.expect.p != nil {
			return nil, errors.New("--expect and --create exclude each other")
		}
		w.expect.p = new(int64)
	}
	return putCmd{&kv.PutRequest{
		Key:             pos[0],
		Value:           []byte(pos[1]),
		ExpectedVersion: w.expect.p,
		TtlMs:           w.ttl.p,
		RequestId:       w.requestIDField(),
	}}, nil
}

func parseGet(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		return nil, fmt.Errorf("want KEY, got %d arguments", len(pos))
	}
	return getCmd{&kv.GetRequest{Key: pos[0]}}, nil
}

func parseDel(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	var w writeFlags
	w.declareRequestID(fs)
	w.declareExpect(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		return nil, fmt.Errorf("want KEY, got %d arguments", len(pos))
	}
	return delCmd{&kv.DeleteRequest{Key: pos[0], ExpectedVersion: w.expect.p, RequestId: w.requestIDField()}}, nil
}

func parsePutAll(fs *flag.FlagSet, args []string, stdin io.Reader) (command, error) {
	var w writeFlags
	w.declareRequestID(fs)
	fs.BoolVar(&w.atomic, "atomic", false, "write all entries or none")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) > 1 {
		return nil, fmt.Errorf("want at most one FILE, got %d arguments", len(pos))
	}
	in := stdin
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	entries, err := readEntries(in)
	if err != nil {
		return nil, err
	}
	return putAllCmd{&kv.PutAllRequest{Entries: entries, Mode: w.mode(), RequestId: w.requestIDField()}}, nil
}

func parseGetAll(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) == 0 {
		return nil, errors.New("want at least one KEY")
	}
	return getAllCmd{&kv.GetAllRequest{Keys: pos}}, nil
}

func parseDelAll(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	var w writeFlags
	w.declareRequestID(fs)
	fs.BoolVar(&w.atomic, "atomic", false, "delete all keys or none")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) == 0 {
		return nil, errors.New("want at least one KEY")
	}
	entries := make([]*kv.DeleteEntry, len(pos))
	for i, k := range pos {
		entries[i] = &kv.DeleteEntry{Key: k}
	}
	return delAllCmd{&kv.DeleteAllRequest{Entries: entries, Mode: w.mode(), RequestId: w.requestIDField()}}, nil
}

func parseScan(fs *flag.FlagSet, args []string, _ io.Reader) (command, error) {
	req := &kv.ScanRequest{}
	fs.BoolVar(&req.KeysOnly, "keys-only", false, "print keys and versions, no values")
	limit := fs.Int("limit", 0, "keys per page (`N`; default: the server's limits.max_scan_entries)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) > 1:
		return nil, errors.New("want at most one PREFIX")
	case *limit < 0 || *limit > math.MaxInt32:
		return nil, fmt.Errorf("--limit %d: want a positive number of keys per page", *limit)
	case len(pos) == 1:
		req.Prefix = pos[0]
	}
	req.Limit = int32(*limit)
	return scanCmd{req}, nil
}
