package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/conf"
)

func TestChanged(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"one key", func(c *Config) { c.Store.Shards = 8 }, []string{"store.shards"}},
		{"in file order", func(c *Config) {
			c.Log.Format = "json"
			c.Limiter.Rate = 5
			c.Server.ShutdownTimeout = time.Minute
		}, []string{"server.shutdown_timeout", "limiter.rate", "log.format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := defaults(t), defaults(t)
			tt.mutate(new)
			if got := Changed(old, new); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Changed = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestChangedEveryKey changes each key alone and expects Changed to name exactly that key, so
// a field Changed cannot see fails here.
func TestChangedEveryKey(t *testing.T) {
	base := defaults(t)
	for i, f := range leaves(base) {
		c := defaults(t)
		v := leaves(c)[i].v
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Float64:
			v.SetFloat(v.Float()/2 + 0.25)
		default:
			t.Fatalf("%s: no way to change a %s", f.key, v.Type())
		}
		if got := Changed(base, c); len(got) != 1 || got[0] != f.key {
			t.Errorf("changing %s: Changed = %q", f.key, got)
		}
	}
}

func TestFromArgsVersion(t *testing.T) {
	// -version answers before the configuration is loaded, so a broken one does not hide it.
	_, err := FromArgs(conf.Default, []string{"-version"}, []string{"PUTALLKV_NOPE=1"})
	if !errors.Is(err, ErrVersion) {
		t.Errorf("FromArgs(-version) = %v, want ErrVersion", err)
	}
}

func TestFromArgsCheckConfig(t *testing.T) {
	// -check-config loads and validates as a run does: flags and the environment apply, and
	// a configuration that fails reports its own error, not ErrCheckConfig.
	c, err := FromArgs(conf.Default, []string{"-check-config", "-addr", "127.0.0.1:1"}, []string{"PUTALLKV_ADMIN_ADDR=127.0.0.1:2"})
	if !errors.Is(err, ErrCheckConfig) || c == nil || c.Server.Addr != "127.0.0.1:1" || c.Admin.Addr != "127.0.0.1:2" {
		t.Errorf("FromArgs(-check-config) = %+v, %v; want the configuration and ErrCheckConfig", c, err)
	}
	_, err = FromArgs(conf.Default, []string{"-check-config"}, []string{"PUTALLKV_NOPE=1"})
	if err == nil || errors.Is(err, ErrCheckConfig) || !strings.Contains(err.Error(), "PUTALLKV_NOPE") {
		t.Errorf("FromArgs(-check-config) with a bad variable = %v; want the variable's error", err)
	}
}

func TestPrintUsage(t *testing.T) {
	var b strings.Builder
	if err := PrintUsage(&b, conf.Default); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"-conf file", "-version", "-check-config", "-upstream"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
	// Every key, with its variable and its default, on a line of its own.
	for _, f := range leaves(defaults(t)) {
		if !strings.Contains(out, f.key+" ") || !strings.Contains(out, f.env+" ") {
			t.Errorf("usage lacks %s / %s:\n%s", f.key, f.env, out)
		}
	}
	for _, line := range []string{"server.shutdown_timeout  PUTALLKV_SERVER_SHUTDOWN_TIMEOUT  10s", `store.data_dir  PUTALLKV_STORE_DATA_DIR  ""`} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), line) {
			t.Errorf("usage lacks %q:\n%s", line, out)
		}
	}
}
