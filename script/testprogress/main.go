// Command testprogress reads `go test -json` on stdin and prints what a person waiting on the
// suite wants to see: a line for each package as it finishes (ok or FAIL, with its time),
// the complete output of each failing test as soon as it fails, build errors as they come, and
// a closing count. It exits 1 if any test, package or build failed.
//
// ./build.sh test pipes the whole suite through it: without -json, go test prints a package's
// result only once every package listed before it has finished, so one slow package (the
// end-to-end tests, test/e2e) hid all progress for minutes; with -json each event comes
// as it happens.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

func main() {
	if !report(os.Stdin, os.Stdout) {
		os.Exit(1)
	}
}

// event is one line of `go test -json`: a test2json TestEvent, or a BuildEvent (ImportPath).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     float64
	FailedBuild string
	ImportPath  string
}

// pkg is what is kept of a package still running: the output of each test that has not
// finished, and the output that belongs to no test.
type pkg struct {
	tests map[string][]string
	own   []string
}

// progress is the state of one report.
type progress struct {
	w                       io.Writer
	pkgs                    map[string]*pkg
	passed, failed, skipped int // tests, subtests included
	pkgsOK, pkgsFailed      int
	buildFailed             bool
}

// report reads go test's JSON events from r, writes the progress to w, and returns whether
// everything passed.
func report(r io.Reader, w io.Writer) bool {
	p := &progress{w: w, pkgs: make(map[string]*pkg)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20) // a test may print long lines
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line) // not an event: go test's own text, passed on as is
			continue
		}
		p.handle(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testprogress: reading go test's output: %v\n", err)
		return false
	}
	// Packages still open had no closing event: go test died under them.
	for _, name := range slices.Sorted(maps.Keys(p.pkgs)) {
		p.closeFailed(name, "[no result]")
	}
	fmt.Fprintf(w, "packages: %d ok, %d failed\n", p.pkgsOK, p.pkgsFailed)
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", p.passed, p.failed, p.skipped)
	return p.failed == 0 && p.pkgsFailed == 0 && !p.buildFailed
}

func (p *progress) state(name string) *pkg {
	s := p.pkgs[name]
	if s == nil {
		s = &pkg{tests: make(map[string][]string)}
		p.pkgs[name] = s
	}
	return s
}

func (p *progress) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(p.w, e.Output)
		return
	case "build-fail":
		p.buildFailed = true
		return
	}
	s := p.state(e.Package)
	switch {
	case e.Action == "output" && e.Test != "":
		s.tests[e.Test] = append(s.tests[e.Test], e.Output)
	case e.Action == "output":
		s.own = append(s.own, e.Output)
	case e.Test == "":
		p.packageDone(e, s)
	case e.Action == "pass":
		p.passed++
		delete(s.tests, e.Test)
	case e.Action == "skip":
		p.skipped++
		delete(s.tests, e.Test)
	case e.Action == "fail":
		p.failed++
		fmt.Fprint(p.w, strings.Join(s.tests[e.Test], ""))
		delete(s.tests, e.Test)
	}
}

// packageDone handles a package's own pass, fail or skip.
func (p *progress) packageDone(e event, s *pkg) {
	switch e.Action {
	case "pass":
		p.pkgsOK++
		delete(p.pkgs, e.Package)
		fmt.Fprintf(p.w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		delete(p.pkgs, e.Package)
		fmt.Fprintf(p.w, "?   \t%s\t[no test files]\n", e.Package)
	case "fail":
		result := fmt.Sprintf("%.3fs", e.Elapsed)
		if e.FailedBuild != "" {
			result = "[build failed]"
		}
		p.closeFailed(e.Package, result)
	}
}

// closeFailed prints what a failed package left unprinted: the output of the tests it was
// running when it failed (a panic, a timeout) and its own, then its FAIL line in go test's
// form (in place of go test's own, which a binary that died may not have printed).
func (p *progress) closeFailed(name, result string) {
	s := p.state(name)
	delete(p.pkgs, name)
	p.pkgsFailed++
	for _, test := range slices.Sorted(maps.Keys(s.tests)) {
		fmt.Fprint(p.w, strings.Join(s.tests[test], ""))
	}
	summary := "FAIL\t" + name + "\t"
	for _, out := range s.own {
		if !strings.HasPrefix(out, summary) {
			fmt.Fprint(p.w, out)
		}
	}
	fmt.Fprintf(p.w, "%s%s\n", summary, result)
}
