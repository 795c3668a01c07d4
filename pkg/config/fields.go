package config

import (
	"reflect"
	"strings"
)

// field is one leaf of Config: a key of the file, a variable of the environment.
type field struct {
	key string        // dotted key, e.g. "server.addr"
	env string        // environment variable, e.g. "PUTALLKV_SERVER_ADDR"
	v   reflect.Value // the field in a Config (settable when the Config was passed by pointer)
}

// leaves returns every leaf of c in declaration order, deriving the dotted key and the
// environment variable from the yaml tags.
func leaves(c *Config) []field {
	var fields []field
	cv := reflect.ValueOf(c).Elem()
	for i := range cv.NumField() {
		section := yamlName(cv.Type().Field(i))
		sv := cv.Field(i)
		for j := range sv.NumField() {
			key := yamlName(sv.Type().Field(j))
			fields = append(fields, field{
				key: section + "." + key,
				env: envPrefix + strings.ToUpper(section+"_"+key),
				v:   sv.Field(j),
			})
		}
	}
	return fields
}

// yamlName returns the key the yaml tag of f gives it.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// Changed returns the dotted keys whose values differ between old and new, in file order:
// what a reload changes.
func Changed(old, new *Config) []string {
	var keys []string
	nl := leaves(new)
	for i, o := range leaves(old) {
		if !o.v.Equal(nl[i].v) {
			keys = append(keys, o.key)
		}
	}
	return keys
}
