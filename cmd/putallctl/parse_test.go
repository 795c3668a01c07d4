package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

func TestParse(t *testing.T) {
	file := filepath.Join(t.TempDir(), "entries.jsonl")
	if err := os.WriteFile(file, []byte(`{"key":"f","value":"from file"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUTALLKV_ADDR", "")
	t.Setenv("PUTALLKV_TOKEN", "")
	const stdin = `{"key":"s","value":"from stdin","ttl_ms":9}`
	fromStdin := []*kv.Entry{{Key: "s", Value: []byte("from stdin"), TtlMs: new(int64(9))}}
	def := invocation{addr: "127.0.0.1:8888", timeout: 5 * time.Second}
	with := func(f func(*invocation)) invocation { inv := def; f(&inv); return inv }

	tests := []struct {
		args []string
		want invocation
		cmd  command
	}{
		{[]string{"put", "k", "v"}, def, putCmd{&kv.PutRequest{Key: "k", Value: []byte("v")}}},
		{
			[]string{"put", "k", "v", "--ttl-ms", "100", "--expect", "3", "--request-id", "r1"}, def,
			putCmd{&kv.PutRequest{Key: "k", Value: []byte("v"), TtlMs: new(int64(100)), ExpectedVersion: new(int64(3)), RequestId: new("r1")}},
		},
		{[]string{"put", "--create", "k", "v"}, def, putCmd{&kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(0))}}},
		{[]string{"put", "k", "-create", "v"}, def, putCmd{&kv.PutRequest{Key: "k", Value: []byte("v"), ExpectedVersion: new(int64(0))}}},
		{[]string{"put", "--", "-k", "--v"}, def, putCmd{&kv.PutRequest{Key: "-k", Value: []byte("--v")}}},
		{
			[]string{"--addr", "db:1", "put", "k", "v", "--json", "--timeout=2s"},
			with(func(i *invocation) { i.addr, i.json, i.timeout = "db:1", true, 2*time.Second }),
			putCmd{&kv.PutRequest{Key: "k", Value: []byte("v")}},
		},
		{[]string{"--timeout", "1m", "get", "k"}, with(func(i *invocation) { i.timeout = time.Minute }), getCmd{&kv.GetRequest{Key: "k"}}},
		{
			[]string{"--token", "pkv_t", "get", "k", "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem"},
			with(func(i *invocation) { i.token, i.tls = "pkv_t", tlsFlags{ca: "ca.pem", cert: "c.pem", key: "k.pem"} }),
			getCmd{&kv.GetRequest{Key: "k"}},
		},
		{[]string{"get", "k", "--tls"}, with(func(i *invocation) { i.tls.on = true }), getCmd{&kv.GetRequest{Key: "k"}}},
		{[]string{"del", "k", "--expect", "4"}, def, delCmd{&kv.DeleteRequest{Key: "k", ExpectedVersion: new(int64(4))}}},
		{[]string{"getall", "a", "b", "c"}, def, getAllCmd{&kv.GetAllRequest{Keys: []string{"a", "b", "c"}}}},
		{[]string{"scan"}, def, scanCmd{&kv.ScanRequest{}}},
		{[]string{"scan", "user/", "--keys-only", "--limit", "10"}, def, scanCmd{&kv.ScanRequest{Prefix: "user/", KeysOnly: true, Limit: 10}}},
		{
			[]string{"delall", "a", "--atomic", "b", "--request-id", "x"}, def,
			delAllCmd{&kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}, {Key: "b"}}, Mode: kv.WriteMode_ATOMIC, RequestId: new("x")}},
		},
		{[]string{"delall", "a"}, def, delAllCmd{&kv.DeleteAllRequest{Entries: []*kv.DeleteEntry{{Key: "a"}}, Mode: kv.WriteMode_BEST_EFFORT}}},
		{[]string{"putall"}, def, putAllCmd{&kv.PutAllRequest{Entries: fromStdin, Mode: kv.WriteMode_BEST_EFFORT}}},
		{[]string{"putall", "-", "--atomic"}, def, putAllCmd{&kv.PutAllRequest{Entries: fromStdin, Mode: kv.WriteMode_ATOMIC}}},
		{
			[]string{"putall", "--request-id", "r", file}, def,
			putAllCmd{&kv.PutAllRequest{Entries: []*kv.Entry{{Key: "f", Value: []byte("from file")}}, Mode: kv.WriteMode_BEST_EFFORT, RequestId: new("r")}},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := parse(tt.args, strings.NewReader(stdin))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.cmd, tt.cmd) {
				t.Errorf("command = %#v, want %#v", got.cmd, tt.cmd)
			}
			got.cmd = nil
			if *got != tt.want {
				t.Errorf("globals = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestParseAddrFromEnv(t *testing.T) {
	t.Setenv("PUTALLKV_ADDR", "10.0.0.1:7")
	got, err := parse([]string{"get", "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.addr != "10.0.0.1:7" {
		t.Fatalf("addr = %q, want the environment's", got.addr)
	}
	if got, _ = parse([]string{"get", "k", "--addr", "h:2"}, nil); got.addr != "h:2" {
		t.Fatalf("addr = %q, want the flag's over the environment's", got.addr)
	}
}

func TestParseTokenFromEnv(t *testing.T) {
	t.Setenv("PUTALLKV_TOKEN", "pkv_env")
	got, err := parse([]string{"get", "k"}, nil)
	if err != nil || got.token != "pkv_env" {
		t.Fatalf("token = %q, %v; want the environment's", got.token, err)
	}
	if got, _ = parse([]string{"get", "k", "--token", "pkv_flag"}, nil); got.token != "pkv_flag" {
		t.Fatalf("token = %q, want the flag's over the environment's", got.token)
	}
}

func TestParseUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error
	}{
		{nil, "no command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"put", "k"}, "put: want KEY VALUE, got 1"},
		{[]string{"put", "k", "v", "w"}, "put: want KEY VALUE, got 3"},
		{[]string{"put", "k", "v", "--expect", "1", "--create"}, "exclude each other"},
		{[]string{"put", "k", "v", "--expect", "one"}, `invalid value "one" for flag -expect: not an integer`},
		{[]string{"put", "k", "v", "--ttl"}, "flag provided but not defined: -ttl"},
		{[]string{"get"}, "get: want KEY, got 0"},
		{[]string{"del", "a", "b"}, "del: want KEY, got 2"},
		{[]string{"getall"}, "getall: want at least one KEY"},
		{[]string{"scan", "a", "b"}, "scan: want at most one PREFIX"},
		{[]string{"scan", "a", "--limit", "-1"}, "scan: --limit -1: want a positive number"},
		{[]string{"scan", "a", "--limit", "4294967296"}, "scan: --limit 4294967296"},
		{[]string{"delall", "--atomic"}, "delall: want at least one KEY"},
		{[]string{"putall", "a", "b"}, "putall: want at most one FILE"},
		{[]string{"putall", filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{[]string{"putall", "-"}, "putall: line 1: "},
		{[]string{"--addr", "nocolon", "get", "k"}, `--addr "nocolon"`},
		{[]string{"--timeout", "0s", "get", "k"}, "--timeout must be positive"},
		{[]string{"--timeout", "5", "get", "k"}, `invalid value "5" for flag -timeout: a duration needs a unit: did you mean 5s?`},
		{[]string{"get", "k", "--timeout", "2.5"}, "did you mean 2.5s?"},
		{[]string{"--timeout", "soon", "get", "k"}, "want a duration such as 5s, 500ms or 1m30s"},
		{[]string{"get", "k", "--cert", "c.pem"}, "--cert and --key go together"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parse(tt.args, strings.NewReader("not json\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"get", "-h"}, {"putall", "k", "--help"}} {
		if _, err := parse(args, strings.NewReader("")); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parse(%q) = %v, want flag.ErrHelp", args, err)
		}
	}
}
