package server

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/putallkv/putallkv/pkg/config"
)

// Run starts the server from cfg and serves until SIGINT or SIGTERM, then shuts down
// gracefully (server.shutdown_timeout, and a second more for the rest); SIGHUP calls Reload
// with load, which reads the configuration as it was read at start. It logs what fails, and
// returns it: start-up or shutdown.
func Run(cfg *config.Config, log *slog.Logger, load func() (*config.Config, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Caught from before start-up, so a SIGHUP sent once the server says it serves cannot
	// meet SIGHUP's default action, which ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := Start(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return err
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			s.Reload(load)
		}
	}
	log.Info("shutting down", "grace", cfg.Server.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout+time.Second)
	defer cancel()
	if err := s.Shutdown(shutdownCtx); err != nil {
		log.Error("shutdown", "err", err)
		return err
	}
	log.Info("stopped")
	return nil
}

// Reload is what SIGHUP does: it reads the token file and the certificates again, then the
// configuration, with load, and applies what can change while serving (the limiter section of
// a server), naming the changed keys that need a restart. A file or a configuration that
// fails is logged and refused, and what is in force is kept.
func (s *Server) Reload(load func() (*config.Config, error)) {
	s.reloadSecurity()
	cfg, err := load()
	if err != nil {
		s.log.Error("configuration reload refused; keeping the running configuration", "err", err)
		return
	}
	s.apply(cfg)
}
