package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// compare prints the reports in files side by side, step by step, with each run's keys/s and
// p99 as a ratio to the first file's: the figures of one machine are only comparable with each
// other.
func compare(files []string, stdout, stderr io.Writer) int {
	if len(files) < 2 {
		fmt.Fprintln(stderr, "usage: putallbench compare BASE.json OTHER.json...")
		return 2
	}
	reports := make([]report, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &reports[i])
		}
		if err != nil {
			fmt.Fprintf(stderr, "putallbench compare: %s: %v\n", f, err)
			return 1
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tconc\tkeys/s\tx base\tp50 ms\tp99 ms\tp99 x base\tsrv CPU µs/op\tcli CPU µs/op\tcli allocs/op\terrors")
	base := reports[0]
	for _, r := range reports {
		for j, s := range r.Steps {
			name := r.Target
			if r.Description != "" {
				name = r.Description
			}
			keys, p99 := "-", "-"
			if j < len(base.Steps) {
				b := base.Steps[j]
				keys = fmt.Sprintf("%.2f", s.KeysPerSec/b.KeysPerSec)
				p99 = fmt.Sprintf("%.2f", s.P99/b.P99)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%s\n", name, s.Concurrency, s.KeysPerSec, keys, s.P50, s.P99, p99,
				cpuColumn(s.ServerCPUPerOpUs), cpuColumn(s.ClientCPUPerOpUs), cpuColumn(s.ClientAllocsPerOp), formatErrors(s.Errors))
		}
	}
	_ = tw.Flush()
	return 0
}
