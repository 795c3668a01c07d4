package gateway

import (
	"context"
	"strconv"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// routeScan lists keys by prefix, a page at a time.
const routeScan = "GET /v1/kv"

// scanPage is a page as the route answers it: {"items":[...],"next_cursor":"...","revision":N},
// the items as getAll's (item), without values when the scan is of keys only.
type scanPage struct {
	resp     *kv.ScanResponse
	keysOnly bool
}

func appendScanPage(dst []byte, p *scanPage) []byte {
	dst = append(dst, `{"items":[`...)
	for i, it := range p.resp.GetItems() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendItem(dst, it, !p.keysOnly)
	}
	dst = append(dst, `],"next_cursor":`...)
	dst = appendJSONString(dst, p.resp.GetNextCursor())
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, p.resp.GetRevision(), 10)
	return append(dst, '}')
}

// scanParams are the query parameters of GET /v1/kv.
var scanParams = []string{"prefix", "cursor", "limit", "keys_only", "snapshot"}

// scan serves GET /v1/kv?prefix=P&cursor=C&limit=N&keys_only=true&snapshot=true: one page of
// the keys that start with P (every parameter optional, each at most once).
func (g *Gateway) scan(ctx context.Context, c *app.RequestContext) error {
	req, err := scanRequest(c)
	if err != nil {
		return err
	}
	resp, err := bounded(ctx, g, g.svc.Scan, req)
	if err != nil {
		return err
	}
	writeAppended(c, 200, &scanPage{resp: resp, keysOnly: req.KeysOnly}, appendScanPage)
	return nil
}

// scanRequest reads a scan's query; the service checks the values' ranges.
func scanRequest(c *app.RequestContext) (*kv.ScanRequest, error) {
	if err := checkQuery(c, scanParams...); err != nil {
		return nil, err
	}
	args := c.Request.URI().QueryArgs()
	for _, p := range scanParams {
		if n := len(args.PeekAll(p)); n > 1 {
			return nil, invalid("query parameter %q is given %d times", p, n)
		}
	}
	req := &kv.ScanRequest{Prefix: string(args.Peek("prefix")), Cursor: string(args.Peek("cursor"))}
	if v, ok := args.PeekExists("limit"); ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return nil, invalid("limit must be a decimal integer, got %q", v)
		}
		req.Limit = int32(n)
	}
	for name, field := range map[string]*bool{"keys_only": &req.KeysOnly, "snapshot": &req.Snapshot} {
		if v, ok := args.PeekExists(name); ok {
			switch v {
			case "true":
				*field = true
			case "false":
			default:
				return nil, invalid("%s must be true or false, got %q", name, v)
			}
		}
	}
	return req, nil
}
