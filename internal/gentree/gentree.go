// Package gentree compares a tree of generated files with its committed copy, for the tests
// that keep generated code (kitex_gen/, the Apache Thrift copy under test/thrift/gen/) true
// to the IDL it is generated from.
package gentree

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Read returns the files under root by their path relative to it.
func Read(root string) (map[string][]byte, error) {
	files := make(map[string][]byte)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		files[rel] = b
		return err
	})
	return files, err
}

// Diff returns a sentence for each difference between the committed files and the generated
// ones, naming each file as dir/path and saying how to regenerate them (fix). None means the
// committed tree is current.
func Diff(committed, generated map[string][]byte, dir, fix string) []string {
	var out []string
	for name, content := range generated {
		if c, ok := committed[name]; !ok {
			out = append(out, fmt.Sprintf("%s/%s is generated but not committed; %s", dir, name, fix))
		} else if !bytes.Equal(c, content) {
			out = append(out, fmt.Sprintf("%s/%s differs from what is generated from idl/; %s", dir, name, fix))
		}
	}
	for name := range committed {
		if _, ok := generated[name]; !ok {
			out = append(out, fmt.Sprintf("%s/%s is committed but no longer generated; %s", dir, name, fix))
		}
	}
	sort.Strings(out)
	return out
}
