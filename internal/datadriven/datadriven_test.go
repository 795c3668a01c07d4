package datadriven

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/putallkv/putallkv/pkg/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

const script = `# A comment, then two cases.

echo a "b c" "" "\xff"
in 1
in 2
----
stale

# The last case has no blank line after it.
count
----
`

// echo answers a case with its words, one a line, and its input; count with its number.
func echo(calls *int) func(c *Case) string {
	return func(c *Case) string {
		*calls++
		if c.Cmd == "count" {
			return strings.Repeat("x", *calls)
		}
		out := []string{c.Cmd}
		for _, a := range c.Args {
			out = append(out, "["+a+"]")
		}
		return strings.Join(append(out, c.Input...), "\n")
	}
}

func TestRewriteThenRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := 0
	RunFile(t, file, true, echo(&calls))
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(script, "----\nstale\n", "----\necho\n[a]\n[b c]\n[]\n[\xff]\nin 1\nin 2\n", 1) + "xx\n"
	if string(b) != want {
		t.Fatalf("rewritten script:\n%s\nwant:\n%s", b, want)
	}
	calls = 0
	RunFile(t, file, false, echo(&calls)) // the rewritten script passes as it stands
	if calls != 2 {
		t.Fatalf("%d cases ran; want 2", calls)
	}
}

func TestParseNamesPositions(t *testing.T) {
	cases := parse(t, "f.txt", strings.Split(strings.TrimSuffix(script, "\n"), "\n"))
	var pos []string
	for _, c := range cases {
		pos = append(pos, c.Pos)
	}
	if got := strings.Join(pos, " "); got != "f.txt:3 f.txt:10" {
		t.Fatalf("cases at %s; want f.txt:3 f.txt:10", got)
	}
	if c := cases[0]; c.Cmd != "echo" || len(c.Args) != 4 || c.Args[3] != "\xff" || len(c.Input) != 2 || len(c.Want) != 1 {
		t.Fatalf("first case %+v", c)
	}
	if c := cases[1]; c.Line != "count" || len(c.Input) != 0 || len(c.Want) != 0 {
		t.Fatalf("second case %+v", c)
	}
}

// A case the run skips is not compared (its stale output stands, also through a rewrite), and
// the cases after it still run.
func TestSkippedCaseIsNotCompared(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := 0
	run := func(c *Case) string {
		if c.Cmd == "echo" {
			c.Skip("echo does not apply here")
			return "anything"
		}
		return echo(&calls)(c)
	}
	RunFile(t, file, true, run)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := script + "x\n"; string(b) != want {
		t.Fatalf("rewritten script:\n%s\nwant:\n%s", b, want)
	}
	calls = 0
	RunFile(t, file, false, run)
	if calls != 1 {
		t.Fatalf("%d cases ran after the skipped one; want 1", calls)
	}
}
