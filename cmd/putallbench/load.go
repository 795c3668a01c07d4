package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// loadFlags is a bulk load: --keys keys of --value-size bytes, in chunks of --chunk.
type loadFlags struct {
	via       string
	addr      string
	keys      int
	valueSize int
	chunk     int
	window    int
	prefix    string
}

// load runs `putallbench load`: one bulk load of --keys keys, timed, through the Load stream
// (--via stream), a loop of PutAll calls one after another (--via putall), or written to
// stdout as Redis protocol SET commands for `redis-cli --pipe` (--via redis-proto), the same
// keys and values each way. It prints "VIA KEYS SECONDS KEYS/S".
func load(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f loadFlags
	fs := flag.NewFlagSet("putallbench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.via, "via", "stream", "stream | putall | redis-proto")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8888", "putallkv RPC address")
	fs.IntVar(&f.keys, "keys", 1_000_000, "keys to load")
	fs.IntVar(&f.valueSize, "value-size", 64, "bytes of each value")
	fs.IntVar(&f.chunk, "chunk", 1000, "entries per chunk (stream) or per PutAll call")
	fs.IntVar(&f.window, "window", kvclient.DefaultLoadWindow, "chunks in flight (stream)")
	fs.StringVar(&f.prefix, "prefix", "load/", "key prefix")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if f.keys <= 0 || f.chunk <= 0 || f.valueSize < 0 {
		fmt.Fprintln(stderr, "putallbench load: --keys and --chunk must be positive")
		return 2
	}
	if f.via == "redis-proto" {
		if err := writeRedisProto(stdout, f); err != nil {
			fmt.Fprintf(stderr, "putallbench load: %v\n", err)
			return 1
		}
		return 0
	}
	c, err := kvclient.New([]string{f.addr}, kvclient.WithRPCTimeout(time.Minute))
	if err != nil {
		fmt.Fprintf(stderr, "putallbench load: %v\n", err)
		return 1
	}
	defer c.Close()
	start := time.Now()
	switch f.via {
	case "stream":
		err = loadStream(ctx, c, f)
	case "putall":
		err = loadPutAll(ctx, c, f)
	default:
		err = fmt.Errorf("--via %q: want stream, putall or redis-proto", f.via)
	}
	if err != nil {
		fmt.Fprintf(stderr, "putallbench load: %v\n", err)
		return 1
	}
	d := time.Since(start)
	fmt.Fprintf(stdout, "%s %d %.3f %.0f\n", f.via, f.keys, d.Seconds(), float64(f.keys)/d.Seconds())
	return 0
}

// chunks yields the load's chunks: entries of keys PREFIX%09d, each value valueSize bytes.
// The entries' memory is reused from chunk to chunk only after the chunk is done with, so
// each chunk is freshly allocated (as a reader of a file would make it).
func chunks(f loadFlags, yield func(n int64, entries []*kv.Entry) error) error {
	value := make([]byte, f.valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	for n, k := int64(0), 0; k < f.keys; n++ {
		size := min(f.chunk, f.keys-k)
		entries := make([]*kv.Entry, size)
		backing := make([]kv.Entry, size)
		for i := range entries {
			backing[i] = kv.Entry{Key: key(f.prefix, k+i), Value: value}
			entries[i] = &backing[i]
		}
		if err := yield(n, entries); err != nil {
			return err
		}
		k += size
	}
	return nil
}

func key(prefix string, i int) string {
	return string(strconv.AppendInt(append([]byte(prefix), "000000000"[:max(0, 9-digits(i))]...), int64(i), 10))
}

func digits(i int) int {
	n := 1
	for ; i >= 10; i /= 10 {
		n++
	}
	return n
}

func loadStream(ctx context.Context, c *kvclient.Client, f loadFlags) error {
	var failed error
	l, err := c.NewLoader(ctx, kvclient.WithLoadWindow(f.window), kvclient.WithLoadAcks(func(a kvclient.LoadAck) {
		if failed == nil && (a.Err != nil || a.Applied != chunkSize(f, a.Chunk)) {
			failed = fmt.Errorf("chunk %d: %d applied, %v", a.Chunk, a.Applied, a.Err)
		}
	}))
	if err != nil {
		return err
	}
	if err := chunks(f, func(n int64, entries []*kv.Entry) error { return l.Send(ctx, n, entries) }); err != nil {
		_ = l.Close()
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}
	return failed // read after Close: every ack has been handled
}

func chunkSize(f loadFlags, n int64) int { return min(f.chunk, f.keys-int(n)*f.chunk) }

func loadPutAll(ctx context.Context, c *kvclient.Client, f loadFlags) error {
	return chunks(f, func(n int64, entries []*kv.Entry) error {
		resp, err := c.PutAll(ctx, &kv.PutAllRequest{Entries: entries, Mode: kv.WriteMode_BEST_EFFORT})
		if err == nil && int(resp.Applied) != len(entries) {
			err = fmt.Errorf("chunk %d: %d of %d applied", n, resp.Applied, len(entries))
		}
		return err
	})
}

// writeRedisProto writes the load as Redis protocol SET commands.
func writeRedisProto(w io.Writer, f loadFlags) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	err := chunks(f, func(_ int64, entries []*kv.Entry) error {
		for _, e := range entries {
			fmt.Fprintf(bw, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(e.Key), e.Key, len(e.Value), e.Value)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}
