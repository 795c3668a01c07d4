package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// ErrVersion is what FromArgs returns for -version, before loading anything: the caller prints
// its version and exits.
var ErrVersion = errors.New("config: -version asked for the version")

// ErrCheckConfig is what FromArgs returns for -check-config, together with the configuration,
// loaded and validated as for a run: the caller checks what else start-up would check, reports
// the outcome and exits instead of serving. (A configuration that fails returns its own error.)
var ErrCheckConfig = errors.New("config: -check-config asked to check the configuration only")

// Flags are the server's command-line flags: -conf names the configuration file, and -addr,
// -admin-addr and -upstream override the settings operators change most. A flag given on the command line
// wins over the environment, the file and the defaults. -version asks for the build instead;
// -check-config for a check of the configuration without serving.
type Flags struct {
	fs        *flag.FlagSet
	file      string
	addr      string
	adminAddr string
	upstream  string
	version   bool
	check     bool
}

// RegisterFlags defines -conf, -addr, -admin-addr, -upstream, -version and -check-config on fs
// and returns them; read them after fs.Parse.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.file, "conf", "", "YAML configuration `file` overriding the embedded defaults")
	fs.StringVar(&f.addr, "addr", "", "Kitex RPC listen `address` (server.addr)")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "admin HTTP listen `address` for /metrics, /healthz, /readyz and /debug/pprof/ (admin.addr)")
	fs.StringVar(&f.upstream, "upstream", "", "RPC servers `HOST:PORT[,HOST:PORT...]` (or dns://HOST:PORT, etcd://SERVICE) of a separate gateway tier (gateway.upstream)")
	fs.BoolVar(&f.version, "version", false, "print the version, commit and Go version, and exit")
	fs.BoolVar(&f.check, "check-config", false, "load and check the configuration as for a run, print one line (OK or the error), "+
		"and exit 0 or 2, without opening a port or the data directory")
	return f
}

// File returns the value of -conf: the configuration file to load, or "" for none.
func (f *Flags) File() string { return f.file }

// Apply sets in c the values of the flags given on the command line. Flags not given leave c
// unchanged, so an explicit -addr "" is still applied (and then fails validation).
func (f *Flags) Apply(c *Config) {
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "addr":
			c.Server.Addr = f.addr
		case "admin-addr":
			c.Admin.Addr = f.adminAddr
		case "upstream":
			c.Gateway.Upstream = f.upstream
		}
	})
}

// FromArgs is the whole start-up path in one call: it parses args (the command line without
// the program name) as the flags of RegisterFlags, loads defaults, the -conf file and environ
// as Load does, applies the flags, and validates the result. It prints nothing: with -h or
// -help it returns flag.ErrHelp (PrintUsage writes the help), with -version ErrVersion, and
// with -check-config the valid configuration together with ErrCheckConfig.
func FromArgs(defaults []byte, args, environ []string) (*Config, error) {
	fs := flag.NewFlagSet("putallkv", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.version {
		return nil, ErrVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	c, err := load(defaults, f.file, environ)
	if err != nil {
		return nil, err
	}
	f.Apply(c)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if f.check {
		return c, ErrCheckConfig
	}
	return c, nil
}
