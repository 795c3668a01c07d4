// Package conf holds the service's configuration files.
package conf

import _ "embed"

// Default is the embedded default configuration the binary starts with: putallkv.yaml, which
// sets every key, so a -conf file or environment variable need only name what it changes.
//
//go:embed putallkv.yaml
var Default []byte
