package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReport runs the real `go test -json` over a small module with a passing package, a
// failing one, one that panics, one that does not build and one without tests, and checks
// the report names each, carries every failure's output whole, and counts right.
func TestReport(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":             "module example\n\ngo 1.22\n",
		"good/good_test.go":  "package good\nimport \"testing\"\nfunc TestGood(t *testing.T) { t.Log(\"quiet on success\") }\nfunc TestSkip(t *testing.T) { t.Skip() }\n",
		"bad/bad_test.go":    "package bad\nimport \"testing\"\nfunc TestOK(t *testing.T) {}\nfunc TestBad(t *testing.T) {\n\tt.Run(\"sub\", func(t *testing.T) { t.Error(\"the sub failure\") })\n\tt.Log(\"the parent's line\")\n}\n",
		"boom/boom_test.go":  "package boom\nimport \"testing\"\nfunc TestBoom(t *testing.T) { t.Log(\"before the panic\"); panic(\"kaboom\") }\n",
		"broken/broken.go":   "package broken\nfunc f() { undefined() }\n",
		"broken/b_test.go":   "package broken\nimport \"testing\"\nfunc TestB(t *testing.T) {}\n",
		"notests/notests.go": "package notests\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-count=1", "-json", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output() // go test fails, as it should: the report is what is checked
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if report(bytes.NewReader(out), &b) {
		t.Error("report = true, want false: packages failed")
	}
	got := b.String()
	for _, want := range []string{
		"ok  \texample/good\t",
		"FAIL\texample/bad\t",
		"the sub failure", "--- FAIL: TestBad/sub", "the parent's line", "--- FAIL: TestBad ",
		"before the panic", "panic: kaboom", "FAIL\texample/boom\t",
		"undefined: undefined", "FAIL\texample/broken\t[build failed]",
		"packages: 1 ok, 3 failed\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"quiet on success", "=== RUN   TestOK"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("report has %q from a passing test:\n%s", unwanted, got)
		}
	}
	if n := strings.Count(got, "FAIL\texample/bad\t"); n != 1 {
		t.Errorf("the FAIL line of example/bad is there %d times:\n%s", n, got)
	}
	// TestGood, TestOK pass; TestSkip skips; TestBad/sub, TestBad, TestBoom fail.
	if !regexp.MustCompile(`\ntests: 2 passed, 3 failed, 1 skipped\n$`).MatchString(got) {
		t.Errorf("closing line wrong:\n%s", got)
	}
}

func TestReportAllPassed(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.01}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"pass","Package":"p","Elapsed":1.25}
`
	var b bytes.Buffer
	if !report(strings.NewReader(in), &b) {
		t.Errorf("report = false, want true:\n%s", b.String())
	}
	if want := "ok  \tp\t1.250s\npackages: 1 ok, 0 failed\ntests: 1 passed, 0 failed, 0 skipped\n"; b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestReportCutShort: a package whose test binary never reported a result fails the run.
func TestReportCutShort(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
`
	var b bytes.Buffer
	if report(strings.NewReader(in), &b) || !strings.Contains(b.String(), "=== RUN   TestA\nFAIL\tp\t[no result]\n") {
		t.Errorf("report:\n%s", b.String())
	}
}
