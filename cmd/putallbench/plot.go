package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotTrace draws a --trace CSV as a PNG: over time, the entries of each batch the Batcher
// sent, its target size, the server's suggested_batch and the server's tokens in hand.
func plotTrace(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("putallbench plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "admission.png", "PNG to write")
	title := fs.String("title", "Batcher batch size and server tokens over time", "plot title")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: putallbench plot [--out F.png] [--title T] TRACE.csv")
		return 2
	}
	series, err := readTrace(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "putallbench plot: %v\n", err)
		return 1
	}
	p := plot.New()
	p.Title.Text = *title
	p.X.Label.Text = "time (ms)"
	p.Y.Label.Text = "keys (log scale; values below 1 drawn at 1)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	lines := []struct {
		name  string
		pts   plotter.XYs
		color color.RGBA
		dots  bool
	}{
		{"tokens in hand (server)", series["tokens"], color.RGBA{R: 200, G: 200, B: 200, A: 255}, false},
		{"suggested_batch", series["suggested"], color.RGBA{R: 230, G: 140, B: 0, A: 255}, false},
		{"target size (client AIMD)", series["target"], color.RGBA{B: 200, A: 255}, false},
		{"batch sent", series["size"], color.RGBA{R: 200, A: 255}, true},
	}
	for _, l := range lines {
		if len(l.pts) == 0 {
			continue
		}
		if l.dots {
			s, err := plotter.NewScatter(l.pts)
			if err != nil {
				fmt.Fprintf(stderr, "putallbench plot: %v\n", err)
				return 1
			}
			s.GlyphStyle = draw.GlyphStyle{Color: l.color, Radius: vg.Points(1), Shape: draw.CircleGlyph{}}
			p.Add(s)
			p.Legend.Add(l.name, s)
			continue
		}
		ln, err := plotter.NewLine(l.pts)
		if err != nil {
			fmt.Fprintf(stderr, "putallbench plot: %v\n", err)
			return 1
		}
		ln.Color = l.color
		ln.Width = vg.Points(1)
		p.Add(ln)
		p.Legend.Add(l.name, ln)
	}
	if err := p.Save(10*vg.Inch, 5*vg.Inch, *out); err != nil {
		fmt.Fprintf(stderr, "putallbench plot: %v\n", err)
		return 1
	}
	return 0
}

// readTrace returns the trace's series by name: size, target and suggested from batch rows,
// tokens from tokens rows; x is the time in milliseconds.
func readTrace(path string) (map[string]plotter.XYs, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: empty trace", path)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	series := map[string]plotter.XYs{}
	add := func(name string, row []string, t float64) error {
		v, err := strconv.ParseFloat(row[col[name]], 64)
		if err != nil {
			return fmt.Errorf("%s: %s %q: %v", path, name, row[col[name]], err)
		}
		if math.IsInf(v, 0) {
			return nil // an unlimited bucket has no level to draw
		}
		v = max(v, 1) // the log scale has no room for an empty (or overdrawn) bucket
		series[name] = append(series[name], plotter.XY{X: t, Y: v})
		return nil
	}
	for _, row := range rows[1:] {
		t, err := strconv.ParseFloat(row[col["t_ms"]], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: t_ms %q: %v", path, row[0], err)
		}
		names := []string{"tokens"}
		if row[col["kind"]] == "batch" {
			names = []string{"size", "target", "suggested"}
		}
		for _, n := range names {
			if err := add(n, row, t); err != nil {
				return nil, err
			}
		}
	}
	return series, nil
}
