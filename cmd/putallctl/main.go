// Command putallctl calls a putallkv server from the shell, one subcommand per API method:
//
//	putallctl [--addr HOST:PORT] [--timeout D] [--json] COMMAND ARGS
//
// It prints one line per key, human-readable or (--json) one JSON object per line, and exits
// 0 on success, 1 when the call or any key of a batch failed, 2 on a usage error. Run
// `putallctl -h` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cloudwego/kitex/pkg/klog"

	"github.com/putallkv/putallkv/pkg/buildinfo"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

const usage = `usage: putallctl [--addr HOST:PORT] [--timeout D] [--json] [--token TOKEN]
                 [--tls] [--ca FILE] [--cert FILE --key FILE] COMMAND ARGS

commands:
  put KEY VALUE [--ttl-ms N] [--expect N | --create] [--request-id ID]
  get KEY
  del KEY [--expect N] [--request-id ID]
  putall [FILE|-] [--atomic] [--request-id ID]
      entries as JSON lines from FILE, or stdin when FILE is absent or -:
      {"key":"k","value":"text"} or {"key":"k","value_base64":"..."},
      optionally with "expected_version":N and "ttl_ms":N
  getall KEY...
  delall KEY... [--atomic] [--request-id ID]
  scan [PREFIX] [--keys-only] [--limit N]
      every key starting with PREFIX (all keys without one), page by page, in the
      server's order (not sorted); --limit sets the keys per page; --timeout bounds the whole scan
  export [--prefix P] [--chunk-keys N] FILE
      write the keys starting with P, as of one revision, to FILE in the export format
      (docs/moving-data.md): chunks of N entries (default 1000), each with its SHA-256;
      FILE appears only when whole
  load FILE [--chunk-size N]
      write the entries of FILE (putall's JSON lines, or an export file, told apart by its
      first line) in chunks of N (default 1000), each entry as it says; progress on stderr
  import FILE [--resume] [--checkpoint CP] [--chunk-size N] [--verify-checksum]
      apply an export file, each chunk only once its SHA-256 matched, writing only the keys
      that differ from what is stored (importing twice writes nothing); CP (default
      FILE.checkpoint) records the chunks applied, --resume continues after them
  migrate --from etcd://HOST:PORT[,...]|redis://HOST:PORT[,...] [--prefix P] [--chunk-size N]
          [--verify-checksum] [--checkpoint CP] [--resume | --resume-from key:K,rev:R]
      copy the keys starting with P from etcd (at one revision) or Redis (SCAN of every
      master) as import does, checkpointing after each chunk (CP, default
      putallctl-migrate.checkpoint); reports keys changed in etcd after the read
  wal check DIR      verify a data directory's log and snapshots (read-only; exit 1 when damaged)
  wal repair DIR     move the damage aside (into DIR/repair-<time>/, undoable); server stopped
  hotkeys [--admin HOST:PORT] [--interval D] [--count N] [--json]
                     a live top of a node's hot keys, from its admin port (the admin role)
  version            print putallctl's version, commit and Go version
  token ROLE NAME    mint a token of ROLE (read, write or admin): prints the token, then
                     the line to add to the server's token file (auth.token_file)

Flags may come before or after arguments; -- ends them. --addr defaults to
$PUTALLKV_ADDR, else 127.0.0.1:8888; --token defaults to $PUTALLKV_TOKEN. --tls speaks
TLS (server verified by the system's roots, or by --ca FILE, which implies --tls); --cert
and --key present a client certificate. Batches are BEST_EFFORT unless --atomic.
--expect 0 (or --create) means the key must not exist yet.

load, import and migrate end with a line of figures (keys, bytes, chunks, written, unchanged,
retries, mismatches, ...); --timeout bounds each of their calls, not the whole command.

Output: one line per key; --json: one JSON object per line, values as value_base64.
Exit status: 0 success, 1 the call failed or some keys of a batch did, 2 usage error.
`

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	// Kitex logs a warning for each dial it retries; the CLI reports the call's outcome.
	klog.SetLevel(klog.LevelError)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command: it parses args (reading putall's entries from stdin when asked),
// makes the call and prints its outcome, and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "wal" {
		return runWAL(args[1:], stdout, stderr)
	}
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, "putallctl", buildinfo.Get())
		return exitOK
	}
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "hotkeys" {
		return runHotKeys(args[1:], stdout, stderr)
	}
	inv, err := parse(args, stdin)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: %v (see putallctl -h)\n", err)
		return exitUsage
	}
	opts, err := inv.clientOptions()
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: %v\n", err)
		return exitUsage
	}
	c, err := kvclient.New([]string{inv.addr}, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: %v\n", err)
		return exitUsage
	}
	defer c.Close()
	ctx := context.Background()
	if lc, ok := inv.cmd.(longCommand); ok {
		// --timeout bounds each of its calls (the client's RPC timeout), not the whole.
		lc.setCallTimeout(inv.timeout)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, inv.timeout)
		defer cancel()
	}
	out := printer{w: stdout, json: inv.json, progress: stderr}
	if err := inv.cmd.do(ctx, c, out); err != nil {
		out.failedKeys(err)
		fmt.Fprintf(stderr, "putallctl: %v\n", err)
		return exitFailed
	}
	return exitOK
}
