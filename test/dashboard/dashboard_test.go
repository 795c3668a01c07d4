// Package dashboard proves the Grafana dashboard conf/grafana/putallkv.json against a real
// Prometheus (Debian's package, through internal/promserver) scraping real putallkv servers
// started in this process: one with a durable store, write admission and the gateway, and one
// on the redis_cluster engine over a real Redis Cluster (internal/rediscluster, once for this
// test binary). Under a short load through the SDK and the gateway, every query of every panel,
// with the dashboard's variables filled in as Grafana fills them, returns data.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/putallkv/putallkv/internal/promserver"
	"github.com/putallkv/putallkv/internal/rediscluster"
	"github.com/putallkv/putallkv/internal/testnet"
	"github.com/putallkv/putallkv/internal/testserver"
	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

func TestMain(m *testing.M) { rediscluster.Main(m) }

// dashboardFile is the dashboard under test; rulesFile the alert rules the Prometheus of
// ./build.sh observe loads too.
var (
	dashboardFile = filepath.Join("..", "..", "conf", "grafana", "putallkv.json")
	rulesFile     = filepath.Join("..", "..", "conf", "prometheus", "alerts.yml")
)

// job is the scrape job's name: the alert rules' node-down rule expects it to start with
// putallkv.
const job = "putallkv"

// rateInterval stands for Grafana's $__rate_interval: at least four scrape intervals, as
// Grafana computes it, plus room for a busy machine's late scrapes.
const rateInterval = "10s"

// scrapeInterval is how often the test's Prometheus scrapes and evaluates the rules.
const scrapeInterval = time.Second

// proofTimeout bounds the load and the polling: the servers are scraped every second, and a
// rate needs two samples of a series that moves.
const proofTimeout = 2 * time.Minute

// Every panel target of the dashboard returns a finite value from a real Prometheus scraping
// the two servers under load; the job and instance variables list them; and the alert rules,
// loaded beside, evaluate without error.
func TestEveryPanelReturnsData(t *testing.T) {
	d := readDashboard(t)
	targets := d.targets(t)
	durable, redis := startDurable(t), startRedis(t)
	prom := promserver.Start(t, promserver.Config{Job: job, Interval: scrapeInterval,
		Targets:   []string{durable.admin, redis.admin},
		RuleFiles: []string{abs(t, rulesFile)}})

	vars := map[string]string{"job": job, "instance": d.allValue(t, "instance"),
		"__rate_interval": rateInterval, "__interval": "1s", "interval": "1s"}
	pending := map[int]string{} // index in targets → why it has no data yet
	for i, tg := range targets {
		tg.query = substitute(t, tg.Expr, vars)
		targets[i] = tg
		pending[i] = "not asked yet"
	}
	ctx, cancel := context.WithTimeout(context.Background(), proofTimeout)
	defer cancel()
	start := time.Now()
	// The load goes on in rounds, a few a second, until every target has data or time is up;
	// after each round the targets still without data are asked again.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	rounds := 0
	for len(pending) > 0 && ctx.Err() == nil {
		durable.round(t, rounds)
		redis.round(t, rounds)
		rounds++
		for i := range pending {
			samples, err := prom.Query(ctx, targets[i].query)
			switch {
			case err != nil && ctx.Err() == nil:
				t.Fatalf("panel %q: Prometheus refuses %s: %v", targets[i].Panel, targets[i].query, err)
			case promserver.Finite(samples):
				delete(pending, i)
			default:
				pending[i] = fmt.Sprintf("%d series, none finite: %v", len(samples), samples)
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	for i, why := range pending {
		t.Errorf("panel %q: no data after %v: %s\n\t%s", targets[i].Panel, proofTimeout, why, targets[i].query)
	}
	if len(pending) > 0 {
		t.Fatalf("Prometheus log:\n%s", prom.Log())
	}
	t.Logf("%d panels, %d targets: every target returned data after %d rounds of load in %v",
		len(d.panels()), len(targets), rounds, time.Since(start).Round(time.Millisecond))

	checkVariables(t, prom, d, durable.admin, redis.admin)
	checkRules(t, prom)
}

// checkVariables asks Prometheus what Grafana asks to fill the job and instance variables:
// the job is there, and both servers are its instances.
func checkVariables(t *testing.T, prom *promserver.Server, d *dashboard, instances ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []struct{ name, want string }{{"job", job}, {"instance", strings.Join(instances, ",")}} {
		label, match := d.labelValues(t, v.name)
		got, err := prom.LabelValues(ctx, label, substitute(t, match, map[string]string{"job": job}))
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Split(v.want, ",")
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("variable %s: label_values(%s, %s) = %v; want %v", v.name, match, label, got, want)
		}
	}
}

// checkRules waits for every alert rule to have been evaluated, and finds each healthy: the
// rules load into a real Prometheus and their expressions evaluate against real series.
func checkRules(t *testing.T, prom *promserver.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		rules, err := prom.Rules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) == 0 {
			t.Fatal("Prometheus loaded no rules from alerts.yml")
		}
		evaluated := 0
		for _, r := range rules {
			if r.Health == "err" {
				t.Fatalf("rule %s fails to evaluate: %s", r.Name, r.LastError)
			}
			if r.Health == "ok" && !r.LastEvaluation.IsZero() {
				evaluated++
			}
		}
		if evaluated == len(rules) {
			t.Logf("%d alert rules loaded and evaluated", len(rules))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d rules evaluated within 30s: %+v", evaluated, len(rules), rules)
		case <-time.After(scrapeInterval / 4):
		}
	}
}

// node is a server under test, with an SDK client of it.
type node struct {
	admin, gateway string
	client         *kvclient.Client
	// round drives one round of load against the node.
	round func(t *testing.T, n int)
}

func newNode(t *testing.T, edit func(*config.Config)) *node {
	s := testserver.Start(t, testserver.Config(t, edit), nil)
	c := testserver.Client(t, s.RPCAddr(), kvclient.WithRetries(0), kvclient.WithRPCTimeout(10*time.Second))
	return &node{admin: s.AdminAddr(), gateway: s.GatewayAddr(), client: c}
}

// admissionBurst is the durable node's largest admissible batch: an ATOMIC batch above it is
// refused by admission, a BEST_EFFORT one applied in chunks.
const admissionBurst = 100

// startDurable starts a server with a durable store (fsync always: every write an fsync),
// write admission of admissionBurst tokens, and the gateway; it takes a snapshot, so that the
// snapshot series exist. Each round writes, reads, deletes and fails in every way a panel
// shows: PutAll ATOMIC with a request_id and BEST_EFFORT (chunked by admission), a batch
// admission refuses, NOT_FOUND, VERSION_MISMATCH, INVALID_ARGUMENT, PutAllMany, and calls
// through the gateway.
func startDurable(t *testing.T) *node {
	n := newNode(t, func(cfg *config.Config) {
		cfg.Store.DataDir = t.TempDir()
		cfg.Limiter.Rate, cfg.Limiter.Burst = 100000, admissionBurst
	})
	if code, _, body := testnet.Do(t, "POST", "http://"+n.admin+"/admin/snapshot", ""); code != 200 {
		t.Fatalf("snapshot: %d %s", code, body)
	}
	ctx := context.Background()
	n.round = func(t *testing.T, r int) {
		t.Helper()
		keys := entries(fmt.Sprintf("d/%d/", r), 1+r*7%64)
		id := fmt.Sprintf("round-%d", r)
		expect(t, "PutAll ATOMIC", nil, call(n.client.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: keys, RequestId: &id})))
		expect(t, "PutAll BEST_EFFORT", nil, call(n.client.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_BEST_EFFORT,
			Entries: entries(fmt.Sprintf("d/%d/be/", r), admissionBurst+admissionBurst/2)})))
		expect(t, "PutAll over the burst", kvclient.ErrTooLarge, call(n.client.PutAll(ctx, &kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC,
			Entries: entries(fmt.Sprintf("d/%d/big/", r), admissionBurst+1)})))
		expect(t, "GetAll", nil, call(n.client.GetAll(ctx, &kv.GetAllRequest{Keys: []string{keys[0].Key, "d/absent"}})))
		expect(t, "Get of an absent key", kvclient.ErrNotFound, call(n.client.Get(ctx, &kv.GetRequest{Key: "d/absent"})))
		stale := int64(1 << 40)
		expect(t, "Put with a stale version", kvclient.ErrVersionMismatch, call(n.client.Put(ctx,
			&kv.PutRequest{Key: keys[0].Key, Value: []byte("x"), ExpectedVersion: &stale})))
		expect(t, "PutAll with an empty key", kvclient.ErrInvalidArgument, call(n.client.PutAll(ctx,
			&kv.PutAllRequest{Entries: []*kv.Entry{{Key: "", Value: []byte("x")}}})))
		expect(t, "DeleteAll", nil, call(n.client.DeleteAll(ctx, &kv.DeleteAllRequest{Mode: kv.WriteMode_BEST_EFFORT,
			Entries: []*kv.DeleteEntry{{Key: keys[0].Key}}})))
		expect(t, "PutAllMany", nil, call(n.client.PutAllMany(ctx, &kv.PutAllManyRequest{Calls: []*kv.PutAllRequest{
			{Entries: entries(fmt.Sprintf("d/%d/m1/", r), 2)}, {Entries: entries(fmt.Sprintf("d/%d/m2/", r), 3)}}})))
		base := "http://" + n.gateway
		if code, _, body := testnet.Do(t, "POST", base+"/v1/kv:putAll",
			fmt.Sprintf(`{"mode":"atomic","entries":[{"key":"h/%d","value":"1"}]}`, r)); code != 200 {
			t.Fatalf("HTTP putAll: %d %s", code, body)
		}
		if code, _, body := testnet.Do(t, "GET", base+"/v1/kv/h-absent", ""); code != 404 {
			t.Fatalf("HTTP GET of an absent key: %d %s", code, body)
		}
	}
	return n
}

// startRedis starts a server on the redis_cluster engine over the test's cluster, asking two
// replicas of each master's one to confirm every write within 20ms: every write is then
// applied but reported UNAVAILABLE (a WAIT short of replicas, which the Redis failures panel
// shows). Each round writes in one hash slot and reads across three.
func startRedis(t *testing.T) *node {
	n := newNode(t, func(cfg *config.Config) {
		cfg.Store.Engine = "redis_cluster"
		cfg.Redis.Addrs = strings.Join(rediscluster.Addrs(t), ",")
		cfg.Redis.ReplicasAck, cfg.Redis.AckTimeout = 2, 20*time.Millisecond
		cfg.Gateway.Addr = ""
	})
	ctx := context.Background()
	run := time.Now().UnixNano()
	n.round = func(t *testing.T, r int) {
		t.Helper()
		tag := fmt.Sprintf("{dash-%d-%d}", run, r)
		expect(t, "PutAll on redis asking 2 replicas", kvclient.ErrUnavailable, call(n.client.PutAll(ctx,
			&kv.PutAllRequest{Mode: kv.WriteMode_ATOMIC, Entries: entries(tag, 3)})))
		expect(t, "GetAll across slots on redis", nil, call(n.client.GetAll(ctx,
			&kv.GetAllRequest{Keys: []string{tag + "0", fmt.Sprintf("dash-a-%d", r), fmt.Sprintf("dash-b-%d", r)}})))
	}
	return n
}

// entries are n entries with keys prefix0, prefix1, ...
func entries(prefix string, n int) []*kv.Entry {
	es := make([]*kv.Entry, n)
	for i := range es {
		es[i] = &kv.Entry{Key: fmt.Sprintf("%s%d", prefix, i), Value: []byte("value")}
	}
	return es
}

// call drops a call's response, keeping its error.
func call[T any](_ T, err error) error { return err }

// expect fails t unless err is want (nil: success).
func expect(t *testing.T, what string, want, err error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: %v; want %v", what, err, want)
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Panels  []panel  `json:"panels"` // a collapsed row's
	Targets []target `json:"targets"`
	DS      dsRef    `json:"datasource"`
}

type target struct {
	Expr  string `json:"expr"`
	DS    dsRef  `json:"datasource"`
	Panel string `json:"-"`
	query string // Expr with the variables filled in
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	AllValue   string          `json:"allValue"`
	IncludeAll bool            `json:"includeAll"`
}

// readDashboard reads the dashboard and checks its frame: a schema of Grafana 10 or later, a
// Prometheus data source variable every panel and target uses, and the instance variable.
func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 38 { // Grafana 10.0 writes 38
		t.Errorf("schemaVersion %d is older than Grafana 10's", d.SchemaVersion)
	}
	ds := d.variable(t, "datasource")
	if ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("the datasource variable is %s of %s; want a data source variable of Prometheus", ds.Type, ds.Query)
	}
	if v := d.variable(t, "instance"); !v.IncludeAll || v.AllValue == "" {
		t.Errorf("the instance variable has no All value: %+v", v)
	}
	return &d
}

func (d *dashboard) variable(t *testing.T, name string) variable {
	t.Helper()
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("the dashboard has no variable %s", name)
	return variable{}
}

// allValue is the value a variable stands for when All is selected.
func (d *dashboard) allValue(t *testing.T, name string) string {
	t.Helper()
	return d.variable(t, name).AllValue
}

// labelValues returns the label and the series selector of a query variable's
// label_values(selector, label).
func (d *dashboard) labelValues(t *testing.T, name string) (label, match string) {
	t.Helper()
	var q struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(d.variable(t, name).Query, &q); err != nil {
		t.Fatalf("variable %s: %v", name, err)
	}
	m := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`).FindStringSubmatch(q.Query)
	if m == nil {
		t.Fatalf("variable %s: %q is not label_values(selector, label)", name, q.Query)
	}
	return m[2], m[1]
}

// panels returns every panel that is not a row, collapsed rows' panels included.
func (d *dashboard) panels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// targets returns every panel's targets, checking that each panel has some and that each reads
// the data source variable.
func (d *dashboard) targets(t *testing.T) []target {
	t.Helper()
	want := dsRef{Type: "prometheus", UID: "${datasource}"}
	var out []target
	for _, p := range d.panels() {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.DS != want {
			t.Errorf("panel %q reads data source %+v; want %+v", p.Title, p.DS, want)
		}
		for _, tg := range p.Targets {
			if tg.DS != want || tg.Expr == "" {
				t.Errorf("panel %q has a target on %+v with query %q", p.Title, tg.DS, tg.Expr)
			}
			tg.Panel = p.Title
			out = append(out, tg)
		}
	}
	if len(out) < 40 {
		t.Fatalf("the dashboard has %d queries; want the full set", len(out))
	}
	return out
}

// variableRef matches $name and ${name} in a query.
var variableRef = regexp.MustCompile(`\$\{?(\w+)\}?`)

// substitute fills in a query's variables as Grafana does; a variable it does not know fails t.
func substitute(t *testing.T, expr string, vars map[string]string) string {
	t.Helper()
	return variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		name := variableRef.FindStringSubmatch(ref)[1]
		v, ok := vars[name]
		if !ok {
			t.Fatalf("query %s uses the variable %s, which the test does not fill", expr, ref)
		}
		return v
	})
}

func abs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
