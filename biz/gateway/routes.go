package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/kitex_gen/kv"
	"github.com/putallkv/putallkv/pkg/kvclient"
)

// Route labels, as they appear in the access log and in metrics.
const (
	routePut       = "PUT /v1/kv/{key}"
	routeGet       = "GET /v1/kv/{key}"
	routeHead      = "HEAD /v1/kv/{key}"
	routeDelete    = "DELETE /v1/kv/{key}"
	routePutAll    = "POST /v1/kv:putAll"
	routeGetAll    = "POST /v1/kv:getAll"
	routeDeleteAll = "POST /v1/kv:deleteAll"
	routeHealthz   = "GET /healthz"
	routeReadyz    = "GET /readyz"
	routeOptions   = "OPTIONS"
	// routeUnmatched labels requests no route took (404, 405, or refused by Hertz before routing).
	routeUnmatched = "unmatched"
)

// handlerFunc is a route's handler: it writes the success response, or returns the error that
// writeError answers.
type handlerFunc func(ctx context.Context, c *app.RequestContext) error

// routes registers every route on the Hertz server.
//
// Hertz reads ':' anywhere in a route as the start of a parameter, so /v1/kv:putAll cannot be
// registered as it stands: one POST route /v1/:op takes the three batch calls and dispatches
// on op.
func (g *Gateway) routes() {
	g.h.Use(g.observe)
	g.h.PUT(keyPrefix+"*key", g.handle(routePut, rawBody, g.put))
	g.h.GET(keyPrefix+"*key", g.handle(routeGet, noBody, g.get))
	g.h.HEAD(keyPrefix+"*key", g.handle(routeHead, noBody, g.get))
	g.h.DELETE(keyPrefix+"*key", g.handle(routeDelete, noBody, g.delete))
	g.h.GET("/v1/kv", g.handle(routeScan, noBody, g.scan))
	g.ops = map[string]app.HandlerFunc{
		"kv:putAll":    g.handle(routePutAll, jsonBody, g.putAll),
		"kv:getAll":    g.handle(routeGetAll, jsonBody, g.getAll),
		"kv:deleteAll": g.handle(routeDeleteAll, jsonBody, g.deleteAll),
	}
	g.h.POST("/v1/:op", g.dispatch)
	for _, path := range []string{"/healthz", "/readyz"} {
		route, h := routeHealthz, g.healthz
		if path == "/readyz" {
			route, h = routeReadyz, g.readyz
		}
		g.h.GET(path, g.handle(route, noBody, h))
		g.h.HEAD(path, g.handle(route, noBody, h))
	}
	if len(g.origins) > 0 {
		g.h.OPTIONS("/*path", g.handle(routeOptions, noBody, g.preflight))
	}
}

// routeKey is where handle records the route label for observe.
const routeKey = "putallkv.route"

// handle adapts h to Hertz: it labels the request with route, runs the checks every route
// makes, runs h within the request's deadline, and answers h's error. kind is what the route's
// body is.
func (g *Gateway) handle(route string, kind bodyKind, h handlerFunc) app.HandlerFunc {
	return func(ctx context.Context, c *app.RequestContext) {
		c.Set(routeKey, route)
		if err := g.serve(ctx, c, route, kind, h); err != nil {
			g.writeError(ctx, c, err)
		}
	}
}

// serve refuses a request whose body length is ambiguous, that names another host, that comes
// from a browser page not allowed, that lacks a token of route's role (see authorize), or
// whose body is not of kind; it then runs h within the request's deadline.
func (g *Gateway) serve(ctx context.Context, c *app.RequestContext, route string, kind bodyKind, h handlerFunc) error {
	if err := checkFraming(c); err != nil {
		return err
	}
	if err := g.hosts.check(&c.Request.Header); err != nil {
		return err
	}
	if err := g.origins.check(c); err != nil {
		return err
	}
	ctx, err := g.authorize(ctx, c, route)
	if err != nil {
		return err
	}
	ctx, cancel, err := g.withDeadline(ctx, c)
	defer cancel()
	if err != nil {
		return err
	}
	if err := checkContentType(&c.Request.Header, kind); err != nil {
		return err
	}
	return h(ctx, c)
}

// dispatch serves POST /v1/:op with the handler of op (percent-decoded), or leaves the
// request unanswered for observe to answer 404.
func (g *Gateway) dispatch(ctx context.Context, c *app.RequestContext) {
	op, _ := url.PathUnescape(c.Param("op"))
	if h, ok := g.ops[op]; ok {
		h(ctx, c)
		return
	}
	c.SetStatusCode(statusOf[codeRouteNotFound])
}

// writeJSON writes v as the response body.
func writeJSON(c *app.RequestContext, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the response types always encode; this would be a bug
		c.SetStatusCode(500)
		return
	}
	c.Data(status, contentType, b)
}

// markReplayed sets Idempotent-Replayed on a response the service replayed.
func markReplayed(c *app.RequestContext, replayed bool) {
	if replayed {
		c.Response.Header.Set(headerReplayed, "true")
	}
}

// readBody reads the request body, at most g.maxBody bytes: a body declared larger is refused
// unread, and a chunked one as soon as it passes the bound. The bytes are a fresh copy, which
// the service may keep. A body that takes longer than Limits.BodyTimeout to arrive closes the
// connection.
func (g *Gateway) readBody(ctx context.Context, c *app.RequestContext) ([]byte, error) {
	if n := c.Request.Header.ContentLength(); n > g.maxBody {
		c.SetConnectionClose() // the client may still be sending; do not wait for the rest
		return nil, tooLarge("the body of %d bytes is over the limit of %d bytes", n, g.maxBody)
	}
	enterStep(ctx, stepBody)
	b, err := readUpTo(c.Request.BodyStream(), c.Request.Header.ContentLength(), g.maxBody+1)
	enterStep(ctx, stepBusy)
	if err != nil {
		c.SetConnectionClose()
		return nil, invalid("reading the body: %v", err)
	}
	if len(b) > g.maxBody {
		c.SetConnectionClose()
		return nil, tooLarge("the body is over the limit of %d bytes", g.maxBody)
	}
	return b, nil
}

// idempotent calls call(ctx, req) as bounded does, refusing it with 409 while another request
// with the same Idempotency-Key (key) is in flight through this gateway. A call still running
// past its caller's deadline stays in flight until it returns.
func idempotent[Req, Resp any](ctx context.Context, g *Gateway, key *string,
	call func(context.Context, Req) (Resp, error), req Req) (Resp, error) {
	if key == nil {
		return bounded(ctx, g, call, req)
	}
	var zero Resp
	if err := g.calls.start(); err != nil {
		return zero, err
	}
	release, ok := g.inFlight.acquire(*key)
	if !ok {
		<-g.calls
		return zero, &apiError{code: codeKeyInUse,
			detail: "a request with this Idempotency-Key is still in flight; retry once it has completed to get its response"}
	}
	return await(ctx, g, func() (Resp, error) {
		defer release()
		return call(ctx, req)
	})
}

// put serves PUT /v1/kv/{key}: the body is the value.
func (g *Gateway) put(ctx context.Context, c *app.RequestContext) error {
	req, err := g.putRequest(ctx, c)
	if err != nil {
		return err
	}
	resp, err := idempotent(ctx, g, req.RequestId, g.svc.Put, req)
	if err != nil {
		return err
	}
	c.Response.Header.Set("ETag", formatETag(resp.Version))
	markReplayed(c, resp.Replayed)
	status := 200
	if resp.Created {
		status = 201
	}
	writeJSON(c, status, "application/json", putResult{Version: resp.Version, Created: resp.Created,
		Replayed: resp.Replayed, SuggestedBatch: resp.SuggestedBatch})
	return nil
}

// putRequest gathers a PUT's key, preconditions, TTL, idempotency key and value.
func (g *Gateway) putRequest(ctx context.Context, c *app.RequestContext) (*kv.PutRequest, error) {
	var req kv.PutRequest
	var err error
	if err = checkQuery(c, "ttl_ms"); err != nil {
		return nil, err
	}
	if req.Key, err = pathKey(c); err != nil {
		return nil, err
	}
	if req.TtlMs, err = ttlParam(c); err != nil {
		return nil, err
	}
	if req.ExpectedVersion, err = putPrecondition(&c.Request.Header); err != nil {
		return nil, err
	}
	if req.RequestId, err = idempotencyKey(&c.Request.Header); err != nil {
		return nil, err
	}
	if req.Value, err = g.readBody(ctx, c); err != nil {
		return nil, err
	}
	return &req, nil
}

// get serves GET /v1/kv/{key}: the raw value with its ETag, or 304 when If-None-Match names
// the current version; and HEAD /v1/kv/{key}, whose answer is the same without the body.
func (g *Gateway) get(ctx context.Context, c *app.RequestContext) error {
	if err := checkQuery(c); err != nil {
		return err
	}
	key, err := pathKey(c)
	if err != nil {
		return err
	}
	unchanged, err := notModified(&c.Request.Header)
	if err != nil {
		return err
	}
	resp, err := bounded(ctx, g, g.svc.Get, &kv.GetRequest{Key: key})
	if err != nil {
		return err
	}
	it := resp.GetItem()
	if it == nil {
		return internalError
	}
	c.Response.Header.Set("ETag", formatETag(it.Version))
	if unchanged(it.Version) {
		c.SetStatusCode(304)
		return nil
	}
	c.Data(200, "application/octet-stream", it.Value)
	return nil
}

// delete serves DELETE /v1/kv/{key}: 204.
func (g *Gateway) delete(ctx context.Context, c *app.RequestContext) error {
	var req kv.DeleteRequest
	var err error
	if err = checkQuery(c); err != nil {
		return err
	}
	if req.Key, err = pathKey(c); err != nil {
		return err
	}
	if req.ExpectedVersion, err = deletePrecondition(&c.Request.Header); err != nil {
		return err
	}
	if req.RequestId, err = idempotencyKey(&c.Request.Header); err != nil {
		return err
	}
	resp, err := idempotent(ctx, g, req.RequestId, g.svc.Delete, &req)
	if err != nil {
		return err
	}
	markReplayed(c, resp.Replayed)
	c.SetStatusCode(204)
	return nil
}

// batchInput reads what every batch call starts with: no query, the idempotency key and the
// body.
func (g *Gateway) batchInput(ctx context.Context, c *app.RequestContext) (idemKey *string, body []byte, err error) {
	if err = checkQuery(c); err != nil {
		return nil, nil, err
	}
	if idemKey, err = idempotencyKey(&c.Request.Header); err != nil {
		return nil, nil, err
	}
	body, err = g.readBody(ctx, c)
	return idemKey, body, err
}

// writeBatch answers putAll and deleteAll with res and a result per entry (see
// kvclient.Statuses: the service leaves them out when every entry was applied at the
// revision; HTTP callers always get them); entries not admitted in time also put Retry-After
// on the (200) response.
func writeBatch[E interface{ GetKey() string }](c *app.RequestContext, res batchResult, entries []E, results []*kv.KeyStatus) error {
	results, err := kvclient.Statuses(entries, results, res.Revision)
	if err != nil {
		return err
	}
	markReplayed(c, res.Replayed)
	if res.RetryAfterMs > 0 {
		c.Response.Header.Set("Retry-After", fmt.Sprint(retryAfterSeconds(time.Duration(res.RetryAfterMs)*time.Millisecond)))
	}
	res.Results = keyStatuses(results)
	writeAppended(c, 200, &res, appendBatchResult)
	return nil
}

// putAll serves POST /v1/kv:putAll.
func (g *Gateway) putAll(ctx context.Context, c *app.RequestContext) error {
	idemKey, body, err := g.batchInput(ctx, c)
	if err != nil {
		return err
	}
	req, err := decodePutAll(body)
	if err != nil {
		return err
	}
	req.RequestId = idemKey
	resp, err := idempotent(ctx, g, idemKey, g.svc.PutAll, req)
	if err != nil {
		return err
	}
	return writeBatch(c, batchResult{Revision: resp.Revision, Applied: resp.Applied, Replayed: resp.Replayed,
		SuggestedBatch: resp.SuggestedBatch, RetryAfterMs: resp.RetryAfterMs}, req.Entries, resp.Results)
}

// deleteAll serves POST /v1/kv:deleteAll.
func (g *Gateway) deleteAll(ctx context.Context, c *app.RequestContext) error {
	idemKey, body, err := g.batchInput(ctx, c)
	if err != nil {
		return err
	}
	req, err := decodeDeleteAll(body)
	if err != nil {
		return err
	}
	req.RequestId = idemKey
	resp, err := idempotent(ctx, g, idemKey, g.svc.DeleteAll, req)
	if err != nil {
		return err
	}
	return writeBatch(c, batchResult{Revision: resp.Revision, Applied: resp.Applied, Replayed: resp.Replayed,
		SuggestedBatch: resp.SuggestedBatch, RetryAfterMs: resp.RetryAfterMs}, req.Entries, resp.Results)
}

// getAll serves POST /v1/kv:getAll. It is a read: Idempotency-Key is accepted and ignored.
func (g *Gateway) getAll(ctx context.Context, c *app.RequestContext) error {
	_, body, err := g.batchInput(ctx, c)
	if err != nil {
		return err
	}
	req, err := decodeGetAll(body)
	if err != nil {
		return err
	}
	resp, err := bounded(ctx, g, g.svc.GetAll, req)
	if err != nil {
		return err
	}
	writeAppended(c, 200, resp, appendGetAll)
	return nil
}

// status is the body of /healthz and /readyz.
type status struct {
	Status string `json:"status"`
}

// healthz serves GET /healthz: the process is up and serving HTTP.
func (g *Gateway) healthz(_ context.Context, c *app.RequestContext) error {
	writeJSON(c, 200, "application/json", status{Status: "ok"})
	return nil
}

// readyz serves GET /readyz: 200 when Options.Ready succeeds within readyTimeout, else 503.
func (g *Gateway) readyz(ctx context.Context, c *app.RequestContext) error {
	if g.ready != nil {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		_, err := bounded(ctx, g, func(ctx context.Context, _ struct{}) (struct{}, error) { return struct{}{}, g.ready(ctx) }, struct{}{})
		if err != nil {
			return &apiError{code: kv.ErrorCode_UNAVAILABLE.String(), detail: "not ready: " + err.Error()}
		}
	}
	writeJSON(c, 200, "application/json", status{Status: "ready"})
	return nil
}
