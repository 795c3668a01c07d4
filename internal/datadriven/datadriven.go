// Package datadriven runs test scripts that state a contract as commands and the output
// expected of each, in the manner of Pebble's data-driven tests. The store's and the service's
// semantics tests share it, so that their scripts read alike and one parser serves both.
//
// A script is a sequence of cases:
//
//	# a comment (also a blank line: both are skipped between cases)
//	command word... [name=value...]
//	input line
//	----
//	expected output
//	(a blank line, or the end of the file, ends the case)
//
// Words are separated by spaces; a word may be a Go-quoted string, for one with spaces, an
// empty one or bytes that are not UTF-8. What the commands mean is the test's own business:
// RunFile hands each case to it and compares what it answers with the expected output.
package datadriven

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Case is one command of a script, with its input lines and the output expected of it.
type Case struct {
	// Pos is the file and line of the command, for messages.
	Pos string
	// Line is the command line as written.
	Line string
	// Cmd is the command line's first word and Args the words after it, unquoted.
	Cmd  string
	Args []string
	// Input holds the lines between the command and "----", as written.
	Input []string
	// Want holds the expected output lines.
	Want []string

	t        testing.TB
	wantFrom int  // index of the first expected line in the file's lines
	skipped  bool // the run said the case does not apply (Skip)
}

// RunFile runs the cases of the script in file, in order, through run, which returns a case's
// output, and fails t for each output that is not the expected one, unless run called the
// case's Skip. With rewrite, it instead
// replaces every expected output in the file by what run answered (review the diff before
// committing it).
func RunFile(t testing.TB, file string, rewrite bool, run func(c *Case) string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	var out []string // the rewritten file
	next := 0
	for _, c := range parse(t, file, lines) {
		got := strings.Split(run(c), "\n")
		if c.skipped {
			continue // a rewrite keeps its expected output as written
		}
		if rewrite {
			out = append(append(out, lines[next:c.wantFrom]...), got...)
			next = c.wantFrom + len(c.Want)
			continue
		}
		if g, w := strings.Join(got, "\n"), strings.Join(c.Want, "\n"); g != w {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", c.Pos, c.Line, g, w)
		}
	}
	if rewrite {
		out = append(out, lines[next:]...)
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parse splits a script into its cases.
func parse(t testing.TB, file string, lines []string) []*Case {
	t.Helper()
	var cases []*Case
	for i := 0; i < len(lines); {
		if l := strings.TrimSpace(lines[i]); l == "" || strings.HasPrefix(l, "#") {
			i++
			continue
		}
		c := &Case{Pos: fmt.Sprintf("%s:%d", file, i+1), Line: lines[i], t: t}
		words := c.Words(c.Line)
		c.Cmd, c.Args = words[0], words[1:]
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			c.Input = append(c.Input, lines[i])
		}
		if i == len(lines) {
			c.Fatalf("%q has no ---- line", c.Line)
		}
		i++
		c.wantFrom = i
		for ; i < len(lines) && lines[i] != ""; i++ {
			c.Want = append(c.Want, lines[i])
		}
		cases = append(cases, c)
	}
	return cases
}

// Skip says the case does not apply to what the run tests (a command another engine has, say):
// its output is not compared, and the next cases run. The reason is logged.
func (c *Case) Skip(format string, args ...any) {
	c.t.Helper()
	c.skipped = true
	c.t.Logf("%s: %s: not compared: %s", c.Pos, c.Line, fmt.Sprintf(format, args...))
}

// Fatalf stops the test with a message that names the case's position.
func (c *Case) Fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s: %s", c.Pos, fmt.Sprintf(format, args...))
}

// Words splits line at spaces into at least one word; a word may be a Go-quoted string.
func (c *Case) Words(line string) []string {
	c.t.Helper()
	var words []string
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimSpace(rest) {
		var w string
		if rest[0] == '"' {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				c.Fatalf("bad quoted string in %q", line)
			}
			w, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			w, rest, _ = strings.Cut(rest, " ")
		}
		words = append(words, w)
	}
	if len(words) == 0 {
		c.Fatalf("an empty line where a command or input was expected")
	}
	return words
}

// Option splits a name=value word.
func (c *Case) Option(word string) (name, value string) {
	c.t.Helper()
	name, value, ok := strings.Cut(word, "=")
	if !ok {
		c.Fatalf("want name=value, got %q", word)
	}
	return name, value
}

// Int parses a decimal integer.
func (c *Case) Int(s string) int64 {
	c.t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		c.Fatalf("want a number, got %q", s)
	}
	return n
}

// NeedArgs stops the test unless words has at least n words.
func (c *Case) NeedArgs(words []string, n int) {
	c.t.Helper()
	if len(words) < n {
		c.Fatalf("%q: want at least %d words", strings.Join(words, " "), n)
	}
}
