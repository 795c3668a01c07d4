package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/putallkv/putallkv/pkg/auth"
	"github.com/putallkv/putallkv/pkg/kvclient"
	"github.com/putallkv/putallkv/pkg/tlsconf"
)

// tlsFlags choose TLS and its files.
type tlsFlags struct {
	on            bool
	ca, cert, key string
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "tls", f.on, "speak TLS to the server")
	fs.StringVar(&f.ca, "ca", f.ca, "CA `FILE` (PEM) that verifies the server; implies --tls")
	fs.StringVar(&f.cert, "cert", f.cert, "client certificate `FILE` (PEM) for a server that asks for one; implies --tls")
	fs.StringVar(&f.key, "key", f.key, "the client certificate's key `FILE` (PEM)")
}

// check reports flags that do not go together.
func (f *tlsFlags) check() error {
	if (f.cert == "") != (f.key == "") {
		return errors.New("--cert and --key go together")
	}
	return nil
}

// files returns the TLS files the flags name, or nil when they ask for no TLS.
func (f *tlsFlags) files() *tlsconf.Files {
	if !f.on && f.ca == "" && f.cert == "" {
		return nil
	}
	return &tlsconf.Files{CA: f.ca, Cert: f.cert, Key: f.key}
}

// clientOptions are the SDK options of the invocation.
func (inv *invocation) clientOptions() ([]kvclient.Option, error) {
	opts := []kvclient.Option{kvclient.WithRPCTimeout(inv.timeout)}
	if inv.token != "" {
		opts = append(opts, kvclient.WithToken(inv.token))
	}
	if files := inv.tls.files(); files != nil {
		cfg, err := tlsconf.Client(*files)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kvclient.WithTLS(cfg))
	}
	return opts, nil
}

// runToken is `putallctl token ROLE NAME`: it mints a token and prints it, then the line of
// the token file that admits it. The token is shown this once and kept nowhere.
func runToken(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: putallctl token read|write|admin NAME")
		return exitUsage
	}
	role, err := auth.ParseRole(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: token: %v\n", err)
		return exitUsage
	}
	token, line, err := auth.Mint(role, args[1])
	if err != nil {
		fmt.Fprintf(stderr, "putallctl: token: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s\n%s\n", token, line)
	fmt.Fprintln(stderr, "putallctl: line 1 is the token: give it to the caller (it is stored nowhere); "+
		"line 2 goes into the server's token file (auth.token_file), then send the server SIGHUP")
	return exitOK
}
