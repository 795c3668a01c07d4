package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	good, err := parseFlags([]string{"--target", "redis", "--steps", "1,10", "--rate", "500", "--batch", "4", "--pipeline", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if good.addr != "127.0.0.1:6379" || len(good.rates) != 2 || good.rates[1] != 500 || good.opKeys() != 12 {
		t.Fatalf("parsed %+v", good)
	}
	multi, err := parseFlags([]string{"--target", "rueidis", "--addr", "127.0.0.1:7000, 127.0.0.1:7001,"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := multi.addrs(); len(got) != 2 || got[1] != "127.0.0.1:7001" {
		t.Fatalf("--addr with two nodes parsed as %q", got)
	}
	for _, args := range [][]string{
		{"--steps", "0"},
		{"--steps", "x"},
		{"--rate", "1,2", "--steps", "1,2,3"},
		{"--batch", "0"},
		{"--read-ratio", "2"},
		{"--mode", "eventually"},
		{"--keys", "3", "--batch", "4"},
		{"--dist", "zipf"},
		{"--dist", "zipf:0"},
		{"--dist", "hot:1.5"},
		{"--dist", "pareto"},
		{"--dist", "hot:0.2", "--keys", "20", "--batch", "16"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
}

func TestCompareAndPlot(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r report) string {
		b, _ := json.Marshal(r)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("a.json", report{Target: "redis", Steps: []stepResult{{Concurrency: 50, KeysPerSec: 1000, P99: 2}}})
	other := write("b.json", report{Target: "rpc", Description: "putallkv", Steps: []stepResult{{Concurrency: 50, KeysPerSec: 500, P99: 4}}})
	var out bytes.Buffer
	if code := compare([]string{base, other}, &out, io.Discard); code != 0 {
		t.Fatalf("compare exit %d", code)
	}
	if !strings.Contains(out.String(), "putallkv") || !strings.Contains(out.String(), "0.50") || !strings.Contains(out.String(), "2.00") {
		t.Fatalf("compare printed:\n%s", out.String())
	}

	trace := filepath.Join(dir, "trace.csv")
	csv := traceHeader + "\n1.0,batch,4,8,16,9,0,false,\n2.0,tokens,,,,,,,12\n3.0,tokens,,,,,,,+Inf\n"
	if err := os.WriteFile(trace, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	series, err := readTrace(trace)
	if err != nil {
		t.Fatal(err)
	}
	if len(series["size"]) != 1 || series["target"][0].Y != 9 || len(series["tokens"]) != 1 {
		t.Fatalf("series %+v", series)
	}
	png := filepath.Join(dir, "out.png")
	if code := plotTrace([]string{"--out", png, trace}, io.Discard); code != 0 {
		t.Fatalf("plot exit %d", code)
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("no plot written: %v", err)
	}
}

func TestProcessCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if d, err := processCPU(os.Getpid()); err != nil || d < 0 {
		t.Fatalf("processCPU(self) = %v, %v", d, err)
	}
	if _, err := processCPU(-1); err == nil {
		t.Fatal("processCPU(-1) succeeded")
	}
}
