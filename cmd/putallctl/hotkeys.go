package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/putallkv/putallkv/pkg/hotkey"
	"github.com/putallkv/putallkv/pkg/tlsconf"
)

// hotKeysFlags are the flags of `putallctl hotkeys`.
type hotKeysFlags struct {
	admin    string
	token    string
	tls      tlsFlags
	interval time.Duration
	count    int
	json     bool
	timeout  time.Duration
}

// runHotKeys is `putallctl hotkeys`: a live top of a node's hot keys, read from its admin
// port's GET /admin/hotkeys every --interval. On a terminal the table is redrawn in place;
// otherwise each refresh is printed after the last, so that a log keeps them all.
func runHotKeys(args []string, stdout, stderr io.Writer) int {
	f := hotKeysFlags{admin: os.Getenv("PUTALLKV_ADMIN_ADDR"), token: os.Getenv("PUTALLKV_TOKEN"), interval: 2 * time.Second, timeout: 5 * time.Second}
	if f.admin == "" {
		f.admin = "127.0.0.1:9100"
	}
	fs := newFlagSet("hotkeys")
	fs.StringVar(&f.admin, "admin", f.admin, "the node's admin `HOST:PORT` (default $PUTALLKV_ADMIN_ADDR, else 127.0.0.1:9100)")
	fs.StringVar(&f.token, "token", f.token, "bearer `TOKEN` of the admin role (default $PUTALLKV_TOKEN)")
	fs.Var(durationFlag{&f.interval}, "interval", "time between refreshes")
	fs.Var(durationFlag{&f.timeout}, "timeout", "bound on each request")
	fs.IntVar(&f.count, "count", 0, "refreshes before exiting; 0 = until interrupted")
	fs.BoolVar(&f.json, "json", false, "print each refresh as one JSON line")
	f.tls.register(fs)
	rest, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK
	case err == nil && len(rest) > 0:
		err = fmt.Errorf("unexpected argument %q", rest[0])
	case err == nil && f.count < 0:
		err = errors.New("--count must not be negative")
	case err == nil:
		err = f.tls.check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "putallctl hotkeys: %v\n", err)
		return exitUsage
	}
	client, url, err := f.client()
	if err != nil {
		fmt.Fprintf(stderr, "putallctl hotkeys: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	live := isTerminal(stdout) && !f.json
	for n := 1; ; n++ {
		report, err := fetchHotKeys(ctx, client, url, f.token, f.timeout)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK // interrupted
			}
			fmt.Fprintf(stderr, "putallctl hotkeys: %v\n", err)
			return exitFailed
		}
		if f.json {
			_ = json.NewEncoder(stdout).Encode(report)
		} else {
			printHotKeys(stdout, report, f.admin, time.Now(), live)
		}
		if f.count > 0 && n >= f.count {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(f.interval):
		}
	}
}

// client returns the HTTP client and the URL of GET /admin/hotkeys the flags ask for.
func (f *hotKeysFlags) client() (*http.Client, string, error) {
	files := f.tls.files()
	if files == nil {
		return &http.Client{}, "http://" + f.admin + "/admin/hotkeys", nil
	}
	cfg, err := tlsconf.Client(*files)
	if err != nil {
		return nil, "", err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, "https://" + f.admin + "/admin/hotkeys", nil
}

// maxReportBytes bounds the report read: max_keys is at most 10 000, names at most 256 bytes.
const maxReportBytes = 8 << 20

func fetchHotKeys(ctx context.Context, client *http.Client, url, token string, timeout time.Duration) (hotkey.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return hotkey.Report{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return hotkey.Report{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReportBytes))
	if err != nil {
		return hotkey.Report{}, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return hotkey.Report{}, errors.New("the node does not detect hot keys (hot_keys.sample_every is 0, or it is a gateway tier)")
	case resp.StatusCode != http.StatusOK:
		return hotkey.Report{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var r hotkey.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return hotkey.Report{}, fmt.Errorf("reading the report: %w", err)
	}
	return r, nil
}

// printHotKeys prints one refresh as a table; live clears the terminal first.
func printHotKeys(w io.Writer, r hotkey.Report, admin string, now time.Time, live bool) {
	if live {
		fmt.Fprint(w, "\x1b[H\x1b[2J")
	}
	fmt.Fprintf(w, "%s  %s  %d hot (threshold %d sampled writes of 1 in %d within %gs)\n",
		now.Format("15:04:05"), admin, len(r.Keys), r.Threshold, r.SampleEvery, r.WindowSec)
	if len(r.Keys) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writes/s\tshare\thot for\t  key")
	for _, k := range r.Keys {
		fmt.Fprintf(tw, "%.0f\t%.1f%%\t%s\t  %q\n", k.Rate, 100*k.Share, now.Sub(k.Since).Truncate(time.Second), k.Key)
	}
	_ = tw.Flush()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
