package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// decode overlays the YAML document b onto c: keys b sets replace c's values, others are kept.
// An empty document changes nothing. Every problem is reported, each with its line and dotted
// key, and a value of the wrong type with the form it should take, as the environment's are:
// "line 3: server.shutdown_timeout: want a duration such as 10s or 1m30s, got "10"".
func decode(c *Config, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want sections such as server: and store: at the top level, got %s", root.Line, form(root))
	}
	fields := make(map[string]field)
	sections := make(map[string]bool)
	for _, f := range leaves(c) {
		fields[f.key] = f
		section, _, _ := strings.Cut(f.key, ".")
		sections[section] = true
	}
	var errs []error
	bad := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...)))
	}
	seen := make(map[string]int) // key or section -> the line that set it
	once := func(k *yaml.Node, name string) bool {
		if line, dup := seen[name]; dup {
			bad(k, "%s is set twice (first on line %d)", name, line)
			return false
		}
		seen[name] = k.Line
		return true
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		section := k.Value
		switch {
		case !sections[section]:
			bad(k, "unknown section %q", section)
			continue
		case !once(k, section) || isNull(v):
			continue
		case v.Kind != yaml.MappingNode:
			bad(v, "%s: want a section of key: value lines, got %s", section, form(v))
			continue
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			kk, vv := v.Content[j], deref(v.Content[j+1])
			key := section + "." + kk.Value
			f, ok := fields[key]
			if !ok {
				bad(kk, "unknown key %q in section %s", kk.Value, section)
				continue
			}
			if !once(kk, key) {
				continue
			}
			if err := vv.Decode(f.v.Addr().Interface()); err != nil {
				bad(vv, "%s: %s, got %s", key, wantForm(f.v.Type()), form(vv))
			}
		}
	}
	return errors.Join(errs...)
}

// deref returns the node an alias stands for, or n itself.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// isNull reports whether n is an empty value ("server:" with nothing under it).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// form describes what n holds, for an error message: a scalar quoted, else its kind.
func form(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a section of keys"
	}
	return "something else"
}

// wantForm says what form a value of type t takes, for error messages of the file and the
// environment alike.
func wantForm(t reflect.Type) string {
	switch {
	case t == durationType:
		return "want a duration such as 10s or 1m30s"
	case t.Kind() == reflect.Int:
		return "want an integer"
	case t.Kind() == reflect.String:
		return "want a string"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() == reflect.Float64:
		return "want a number such as 0.25"
	}
	return "want a " + t.String()
}
