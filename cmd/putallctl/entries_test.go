package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

func TestReadEntries(t *testing.T) {
	in := "\n" +
		`{"key":"a","value":"text"}` + "\r\n" +
		"   \n" +
		`{"key":"b","value_base64":"AP8=","expected_version":0}` + "\n" +
		`{"key":"c","value":"","expected_version":12,"ttl_ms":500}` // no final newline
	got, err := readEntries(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []*kv.Entry{
		{Key: "a", Value: []byte("text")},
		{Key: "b", Value: []byte{0, 0xff}, ExpectedVersion: new(int64(0))},
		{Key: "c", Value: []byte{}, ExpectedVersion: new(int64(12)), TtlMs: new(int64(500))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReadEntriesErrors(t *testing.T) {
	ok := `{"key":"a","value":"x"}` + "\n"
	tests := []struct {
		in   string
		want string
	}{
		{"", "no entries"},
		{"\n \n", "no entries"},
		{ok + "\n" + "{not json}\n", "line 3: invalid character"},
		{ok + `{"key":"b","value_base64":"***"}`, `line 2: "value_base64": illegal base64`},
		{`{"value":"x"}`, `line 1: missing "key"`},
		{`{"key":"a"}`, `line 1: missing "value" or "value_base64"`},
		{`{"key":"a","value":"x","value_base64":"eA=="}`, `line 1: both "value" and "value_base64"`},
		{`{"key":"a","value":"x","expected_verison":3}`, `line 1: json: unknown field "expected_verison"`},
		{`{"key":"a","value":"x"} {"key":"b","value":"y"}`, "line 1: more than one JSON value"},
		{`{"key":"a","value":1}`, "line 1: json: cannot unmarshal number"},
		{`{"key":"a","value":"x","ttl_ms":1.5}`, "line 1: json: cannot unmarshal number 1.5"},
	}
	for _, tt := range tests {
		_, err := readEntries(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("readEntries(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}
