package server

import (
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"github.com/putallkv/putallkv/biz/gateway"
	"github.com/putallkv/putallkv/pkg/config"
	"github.com/putallkv/putallkv/pkg/metrics"
)

// fdReserve is the file descriptors the process needs besides its connections: standard
// streams, listeners, pollers, log segments and snapshots.
const fdReserve = 64

// checkFDLimit logs the process's open-file limit (RLIMIT_NOFILE; Go raises the soft limit to
// the hard one at start) and refuses to start when the connection caps of the listeners this
// process runs, with fdReserve, could exceed it: the caps exist so that a flood of connections
// on one port cannot take the descriptors the others (and the store) need.
func checkFDLimit(cfg *config.Config, log *slog.Logger) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the open-file limit (RLIMIT_NOFILE); connection caps unchecked", "err", err)
		return nil
	}
	type part struct {
		key string
		n   int
	}
	var parts []part
	if cfg.Gateway.Upstream == "" {
		parts = append(parts, part{"server.max_connections", cfg.Server.MaxConnections})
	}
	if cfg.Gateway.Addr != "" {
		parts = append(parts, part{"gateway.max_connections", cfg.Gateway.MaxConnections})
		if cfg.Gateway.Upstream != "" { // each call it serves may hold an upstream connection
			parts = append(parts, part{"gateway.max_connections (upstream)", cfg.Gateway.MaxConnections})
		}
	}
	parts = append(parts, part{"admin.max_connections", cfg.Admin.MaxConnections})
	need, terms := fdReserve, make([]string, 0, len(parts)+1)
	for _, p := range parts {
		need += p.n
		terms = append(terms, fmt.Sprintf("%s (%d)", p.key, p.n))
	}
	terms = append(terms, fmt.Sprintf("%d for the process itself", fdReserve))
	log.Info("open-file limit", "rlimit_nofile", rl.Cur, "needed", need)
	if uint64(need) > rl.Cur {
		return fmt.Errorf("open files: %s = %d is over the process's open-file limit (RLIMIT_NOFILE) of %d; "+
			"lower the caps or raise the limit (ulimit -n)", strings.Join(terms, " + "), need, rl.Cur)
	}
	return nil
}

// gatewayLimits are the gateway's limits from its configuration.
func gatewayLimits(g config.GatewayConfig) gateway.Limits {
	return gateway.Limits{MaxConnections: g.MaxConnections, IdleTimeout: g.IdleTimeout, HeaderTimeout: g.HeaderTimeout,
		BodyTimeout: g.BodyTimeout, RequestTimeout: g.RequestTimeout}
}

// adminLimits are the admin server's limits from its configuration.
func adminLimits(a config.AdminConfig) metrics.AdminLimits {
	return metrics.AdminLimits{MaxConnections: a.MaxConnections, RequestTimeout: a.RequestTimeout}
}
