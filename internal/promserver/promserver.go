// Package promserver gives tests a real Prometheus: the binaries of Debian's prometheus package
// (promtool, prometheus), installed when missing, and a Prometheus server started on loopback
// scraping the targets a test names, asked through its HTTP API (/api/v1/query, the label
// values, the rules) as Grafana and an operator would ask it.
//
// The server listens on PROMETHEUS_PORT when that is set (a port kept for it), otherwise on a
// free port found by probing. It is not named PUTALLKV_*: the binary refuses variables of its
// own prefix that name no configuration key.
package promserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/syncbuf"
)

// Binary returns the path of name (promtool or prometheus), installing Debian's prometheus
// package first when it is missing and the test runs as root; otherwise the test is skipped,
// saying how to get it.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is missing and installing it needs root: apt-get install prometheus (Debian's package) and run again", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The lock timeout lets an install in another process finish first rather than fail.
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "prometheus"}} {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s still missing after installing Debian's prometheus package: %v", name, err)
	}
	return path
}

// Config is what a Server scrapes: one job's targets (host:port, whose /metrics is read) every
// Interval, with the alert rules of RuleFiles (absolute paths) evaluated as often.
type Config struct {
	Job       string
	Targets   []string
	Interval  time.Duration
	RuleFiles []string
}

// yaml is the configuration file Prometheus reads. JSON is YAML, so encoding/json writes it.
func (c Config) yaml() ([]byte, error) {
	type static struct {
		Targets []string `json:"targets"`
	}
	type scrape struct {
		Job    string   `json:"job_name"`
		Static []static `json:"static_configs"`
	}
	return json.Marshal(map[string]any{
		"global":         map[string]string{"scrape_interval": c.Interval.String(), "evaluation_interval": c.Interval.String()},
		"rule_files":     c.RuleFiles,
		"scrape_configs": []scrape{{Job: c.Job, Static: []static{{Targets: c.Targets}}}},
	})
}

// Server is a running Prometheus.
type Server struct {
	// URL is its base URL, http://127.0.0.1:PORT.
	URL    string
	cmd    *exec.Cmd
	exited chan error // receives Wait's result
	log    *syncbuf.Buffer
}

// Start runs Prometheus (installing it when missing, see Binary) with cfg, its storage in a
// temporary directory, and returns once it answers /-/ready. It is stopped when t ends: SIGTERM,
// then SIGKILL if it has not exited within 10 seconds.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin := Binary(t, "prometheus")
	dir := t.TempDir()
	body, err := cfg.yaml()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	fixed := os.Getenv("PROMETHEUS_PORT")
	var errs []error
	// A probed port can be taken before Prometheus binds it: then it exits, and the next try
	// probes another.
	for try := range 3 {
		port := fixed
		if port == "" {
			if port, err = freePort(); err != nil {
				t.Fatal(err)
			}
		}
		s, err := start(bin, file, filepath.Join(dir, fmt.Sprintf("data%d", try)), port)
		if err == nil {
			t.Cleanup(func() {
				if err := s.stop(); err != nil {
					t.Errorf("stopping prometheus: %v\n%s", err, s.log.String())
				}
			})
			t.Logf("prometheus %s, scraping %v every %v", s.URL, cfg.Targets, cfg.Interval)
			return s
		}
		errs = append(errs, err)
		if fixed != "" {
			break
		}
	}
	t.Fatal(errors.Join(errs...))
	return nil
}

// freePort is a loopback port nothing listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// readyTimeout bounds Prometheus's start: opening an empty storage takes well under a second.
const readyTimeout = 30 * time.Second

func start(bin, config, data, port string) (*Server, error) {
	s := &Server{URL: "http://127.0.0.1:" + port, exited: make(chan error, 1), log: &syncbuf.Buffer{}}
	s.cmd = exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+data,
		"--web.listen-address=127.0.0.1:"+port)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.WaitDelay = time.Second
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("promserver: starting %s: %w", bin, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("promserver: prometheus on port %s exited at start: %v\n%s", port, err, s.log.String())
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.get(ctx, "/-/ready", nil)
		cancel()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			<-s.exited
			return nil, fmt.Errorf("promserver: prometheus on port %s not ready within %v: %v\n%s", port, readyTimeout, err, s.log.String())
		}
	}
}

// stop ends exactly the process start started.
func (s *Server) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-s.exited:
		return err
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("promserver: prometheus did not stop within 10s of SIGTERM: killed")
	}
}

// Log is what Prometheus has logged so far.
func (s *Server) Log() string { return s.log.String() }

// get GETs path with the query params and returns the body of a 200 answer.
func (s *Server) get(ctx context.Context, path string, params url.Values) ([]byte, error) {
	u := s.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// api GETs an /api/v1 path and decodes its data into data.
func (s *Server) api(ctx context.Context, path string, params url.Values, data any) error {
	body, err := s.get(ctx, "/api/v1/"+path, params)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("/api/v1/%s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("/api/v1/%s: %s: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

// Sample is one value of a query's result: its series' labels and the value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query evaluates expr now (/api/v1/query) and returns its samples: a vector's, or a scalar's
// one. An expression Prometheus cannot parse or evaluate is an error.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		Type   string          `json:"resultType"`
		Result json.RawMessage `json:"result"`
	}
	if err := s.api(ctx, "query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	switch data.Type {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		f, err := value(v)
		return []Sample{{Value: f}}, err
	case "vector":
		var vs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vs); err != nil {
			return nil, err
		}
		out := make([]Sample, len(vs))
		for i, v := range vs {
			f, err := value(v.Value)
			if err != nil {
				return nil, err
			}
			out[i] = Sample{Labels: v.Metric, Value: f}
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %s: a result of type %q", expr, data.Type)
}

// value reads the value of a [time, "value"] pair; NaN and ±Inf as Prometheus writes them.
func value(pair [2]any) (float64, error) {
	str, ok := pair[1].(string)
	if !ok {
		return 0, fmt.Errorf("a sample value %v that is not a string", pair[1])
	}
	return strconv.ParseFloat(str, 64)
}

// Finite says whether any of samples has a finite value: the query returns data to plot.
func Finite(samples []Sample) bool {
	for _, s := range samples {
		if !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0) {
			return true
		}
	}
	return false
}

// LabelValues returns the values of label among the series match selects
// (/api/v1/label/<label>/values?match[]=...), as Grafana's label_values(match, label) does.
func (s *Server) LabelValues(ctx context.Context, label, match string) ([]string, error) {
	var values []string
	err := s.api(ctx, "label/"+url.PathEscape(label)+"/values", url.Values{"match[]": {match}}, &values)
	return values, err
}

// Rule is one alerting or recording rule as /api/v1/rules reports it.
type Rule struct {
	Name           string    `json:"name"`
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

// Rules returns every rule loaded, of every group.
func (s *Server) Rules(ctx context.Context) ([]Rule, error) {
	var data struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := s.api(ctx, "rules", nil, &data); err != nil {
		return nil, err
	}
	var rules []Rule
	for _, g := range data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}
