package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/buildinfo"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

func TestPrint(t *testing.T) {
	tests := []struct {
		name     string
		r        record
		text, js string
	}{
		{
			"write", record{Key: "k", Version: 7, Created: true},
			`k  version=7  code=OK  created`,
			`{"key":"k","version":7,"code":"OK","created":true}`,
		},
		{
			"replayed batch key", record{Key: "k", Version: 3, Code: code(kv.ErrorCode_VERSION_MISMATCH), Replayed: true},
			`k  version=3  code=VERSION_MISMATCH  replayed`,
			`{"key":"k","version":3,"code":"VERSION_MISMATCH","replayed":true}`,
		},
		{
			"text value", itemRecord(&kv.Item{Key: "k", Value: []byte("a \"b\"\n"), Version: 4, Found: true, ExpiresAtMs: 99}),
			`k  version=4  code=OK  value="a \"b\"\n"  expires_at_ms=99`,
			`{"key":"k","version":4,"code":"OK","value_base64":"YSAiYiIK","expires_at_ms":99}`,
		},
		{
			"binary value", itemRecord(&kv.Item{Key: "k", Value: []byte{0xff, 0}, Version: 4, Found: true}),
			`k  version=4  code=OK  value_base64=/wA=`,
			`{"key":"k","version":4,"code":"OK","value_base64":"/wA="}`,
		},
		{
			"empty value", itemRecord(&kv.Item{Key: "k", Value: nil, Version: 4, Found: true}),
			`k  version=4  code=OK  value=""`,
			`{"key":"k","version":4,"code":"OK","value_base64":""}`,
		},
		{
			"missing key", itemRecord(&kv.Item{Key: "k"}),
			`k  version=0  code=NOT_FOUND`,
			`{"key":"k","version":0,"code":"NOT_FOUND"}`,
		},
		{
			"odd key", record{Key: "a b", Version: 1},
			`"a b"  version=1  code=OK`,
			`{"key":"a b","version":1,"code":"OK"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, json := range []bool{false, true} {
				var b bytes.Buffer
				printer{w: &b, json: json}.print(tt.r)
				want := tt.text
				if json {
					want = tt.js
				}
				if got := b.String(); got != want+"\n" {
					t.Errorf("json=%v: got %q, want %q", json, got, want+"\n")
				}
			}
		})
	}
}

func TestQuoteKey(t *testing.T) {
	for k, want := range map[string]string{
		"plain/key-1": "plain/key-1",
		"ключ":        "ключ",
		"":            `""`,
		"a\tb":        `"a\tb"`,
		`say"hi"`:     `"say\"hi\""`,
		"\xff":        `"\xff"`,
	} {
		if got := quoteKey(k); got != want {
			t.Errorf("quoteKey(%q) = %s, want %s", k, got, want)
		}
	}
}

func TestReportBatch(t *testing.T) {
	var b bytes.Buffer
	entries := []*kv.Entry{{Key: "a"}, {Key: "b"}}
	err := reportBatch(printer{w: &b}, entries, []*kv.KeyStatus{
		{Key: "a", Code: kv.ErrorCode_OK, Version: 5},
		{Key: "b", Code: kv.ErrorCode_ALREADY_EXISTS, Version: 2},
	}, 5, false)
	if err == nil || err.Error() != "1 of 2 keys failed" {
		t.Fatalf("err = %v, want 1 of 2 keys failed", err)
	}
	want := "a  version=5  code=OK\nb  version=2  code=ALREADY_EXISTS\n"
	if b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}

	// Every entry applied at the revision: the server sent no results.
	b.Reset()
	if err := reportBatch(printer{w: &b}, entries, nil, 7, false); err != nil {
		t.Fatal(err)
	}
	if want := "a  version=7  code=OK\nb  version=7  code=OK\n"; b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}
	b.Reset()
	if err := reportBatch(printer{w: &b}, entries[:1], []*kv.KeyStatus{{Key: "a", Version: 6}}, 6, true); err != nil {
		t.Fatal(err)
	}
	if want := "a  version=6  code=OK  replayed\n"; b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}
}

func TestFailedKeys(t *testing.T) {
	var b bytes.Buffer
	p := printer{w: &b, json: true}
	p.failedKeys(errors.New("not from the server"))
	p.failedKeys(&kvclient.Error{Code: kv.ErrorCode_VERSION_MISMATCH, Failed: []*kv.KeyStatus{
		{Key: "a", Code: kv.ErrorCode_VERSION_MISMATCH, Version: 9},
	}})
	if want := `{"key":"a","version":9,"code":"VERSION_MISMATCH"}` + "\n"; b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"put", "k"}, strings.NewReader(""), &out, &errb); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if got := errb.String(); !strings.HasPrefix(got, "putallctl: put: want KEY VALUE") || strings.Count(got, "\n") != 1 {
		t.Fatalf("stderr %q, want one line naming the problem", got)
	}
	out.Reset()
	if code := run([]string{"-h"}, strings.NewReader(""), &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "usage: putallctl") {
		t.Fatalf("-h: exit %d, stdout %q", code, out.String())
	}
}

// TestRunUnreachable runs a real call against an address where nothing listens.
func TestRunUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	code := run([]string{"--addr", addr, "--timeout", "5s", "getall", "a", "b"}, strings.NewReader(""), &out, &errb)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	if got := errb.String(); !strings.HasPrefix(got, "putallctl: UNAVAILABLE: ") || strings.Count(got, "\n") != 1 ||
		!strings.Contains(got, "connection refused") {
		t.Fatalf("stderr %q, want one UNAVAILABLE line saying the connection was refused", got)
	}
	if out.Len() != 0 {
		t.Fatalf("stdout %q, want nothing", out.String())
	}
}

func TestRunVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, strings.NewReader(""), &out, &errb); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	// The test binary has no stamped version: the fallback says so, and the Go version is real.
	want := fmt.Sprintf("putallctl %s\n", buildinfo.Get())
	if out.String() != want || !strings.Contains(want, runtime.Version()) {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
}
