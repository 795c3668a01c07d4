package config

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
)

// PrintUsage writes the flags of RegisterFlags, then every configuration key with its
// environment variable and its value in defaults (the YAML document Load starts from), so
// that -h answers "what can I set, and how" without the README at hand.
func PrintUsage(w io.Writer, defaults []byte) error {
	fs := flag.NewFlagSet("putallkv", flag.ContinueOnError)
	RegisterFlags(fs)
	fs.SetOutput(w)
	fmt.Fprintln(w, "flags:")
	fs.PrintDefaults()

	c := new(Config)
	if err := decode(c, defaults); err != nil {
		return fmt.Errorf("config: defaults: %w", err)
	}
	fmt.Fprintf(w, "\nconfiguration keys: set them in the -conf file (section:, then key: value), or as the\n"+
		"environment variable beside each; flags win over the environment, which wins over the file.\n"+
		"A duration is written 10s, 1m30s; SIGHUP reloads the file and the environment.\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  key\tenvironment variable\tdefault")
	for _, f := range leaves(c) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.key, f.env, display(f.v.Interface()))
	}
	return tw.Flush()
}

// display writes a default as it would be written in the file: an empty string as "".
func display(v any) string {
	if s, ok := v.(string); ok && s == "" {
		return `""`
	}
	return fmt.Sprint(v)
}
