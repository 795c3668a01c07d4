package gateway

import (
	"strings"
	"testing"
)

// TestAccessLogSetting checks which requests get an access-log line under each setting (by
// default only those answered with an error), and that the metrics count every request
// whatever the setting.
func TestAccessLogSetting(t *testing.T) {
	for _, c := range []struct {
		setting     AccessLog
		ok, refused bool // whether the 201 and the 400 get a line
	}{
		{"", false, true}, {AccessLogErrors, false, true}, {AccessLogAll, true, true}, {AccessLogOff, false, false},
	} {
		t.Run(string(c.setting), func(t *testing.T) {
			e := startWith(t, newService(t), Options{AccessLog: c.setting})
			e.do(t, "PUT", keyPath("a"), "v", "X-Request-ID", "ok-1").want(t, 201)
			e.do(t, "POST", "/v1/kv:putAll", `{"entries":[]}`, "X-Request-ID", "refused-1").want(t, 400)
			logs := e.logs.String()
			if strings.Contains(logs, `"ok-1"`) != c.ok || strings.Contains(logs, `"refused-1"`) != c.refused {
				t.Fatalf("access log %q: want the 201 logged %v, the 400 %v", logs, c.ok, c.refused)
			}
			if metricValue(t, e, "putallkv_gateway_http_requests_total", "route", routePut, "status", "201") != 1 ||
				metricValue(t, e, "putallkv_gateway_http_requests_total", "route", routePutAll, "status", "400") != 1 {
				t.Fatal("the metrics did not count both requests")
			}
		})
	}
}
