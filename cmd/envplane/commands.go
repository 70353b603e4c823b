package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// tokenFile is where `serve` writes the auto-bootstrapped admin token.
const tokenFile = "admin.token"

func serveCommand(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Serve the API (and, on an empty embedded store, bootstrap the platform admin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error { return serve(cmd.Context(), a) })
		},
	}
}

// serve runs the API server and the background loop until ctx ends.
func serve(ctx context.Context, a *app) error {
	if a.embedded && a.cfg.AutoBootstrap {
		token, err := a.svc.Bootstrap(ctx, cp.BootstrapRequest{})
		if err != nil {
			return fmt.Errorf("cannot bootstrap: %w", err)
		}
		if token != "" {
			path := filepath.Join(a.cfg.DataDir, tokenFile)
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				return fmt.Errorf("cannot write the admin token: %w", err)
			}
			a.logger.Info("bootstrapped the platform admin; its token is in the file", "path", path)
			// The admin made just now can be given a password to sign in with.
			pw, err := adminPassword("")
			if err != nil {
				return err
			}
			if err := firstPassword(ctx, a.svc, "", pw, io.Discard); err != nil {
				return err
			}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ops, err := httpapi.NewOperationMetrics(reg)
	if err != nil {
		return err
	}
	a.svc.Observer = ops
	srv, err := httpapi.NewServer(a.svc, a.logger, reg, httpapi.Options{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	// Watches answer at once when the server shuts down, instead of holding it.
	hs.RegisterOnShutdown(a.svc.CloseWatches)
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		var wg sync.WaitGroup
		wg.Go(func() { a.svc.Follow(bg) })
		if a.clock != nil {
			wg.Go(func() {
				a.clock.Run(bg, a.cfg.ReconcileInterval, func(err error) {
					a.logger.Warn("cannot sync with the store's clock; keeping the last estimate", "err", err)
				})
			})
		}
		a.svc.Run(bg, a.cfg.ReconcileInterval)
		wg.Wait()
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	a.logger.Info("envplane is serving", "listen", ln.Addr().String(), "data_dir", a.cfg.DataDir)
	select {
	case err := <-errc:
		cancel()
		<-loop
		return err
	case <-ctx.Done():
	}
	a.logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	err = hs.Shutdown(sctx)
	cancel()
	<-loop
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func bootstrapCommand(stdout, stderr io.Writer) *cobra.Command {
	var org, email, passwordFile string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the platform admin and print its token (once; idempotent afterwards)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				pw, err := adminPassword(passwordFile)
				if err != nil {
					return err
				}
				token, err := a.svc.Bootstrap(cmd.Context(), cp.BootstrapRequest{Email: email, Org: org})
				if err != nil {
					return err
				}
				if err := firstPassword(cmd.Context(), a.svc, email, pw, stderr); err != nil {
					return err
				}
				if token == "" {
					fmt.Fprintln(stderr, "already bootstrapped: a platform admin key exists")
					return nil
				}
				_, err = fmt.Fprintln(stdout, token)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "also create this organization, owned by the admin")
	cmd.Flags().StringVar(&email, "email", "", "the admin's email (default admin@envplane.local)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "set the admin's first password from this file (or "+adminPasswordEnv+"), so the admin can sign in")
	return cmd
}

func migrateCommand(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the control-plane store's migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Opening the store applies its migrations.
			return withApp(cmd, stderr, func(a *app) error {
				a.logger.Info("control-plane store is migrated")
				return nil
			})
		},
	}
}

func reconcileCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "reconcile",
		Short: "Run the background work once: resume abandoned operations, end graces, scheduled rotations, prune idempotency keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				r := a.svc.Tick(cmd.Context())
				_, err := fmt.Fprintf(stdout, "resumed %d operations, revoked %d credentials, started %d rotations, forgot %d idempotency keys\n",
					r.Resumed, r.Revoked, r.Rotated, r.Forgotten)
				return err
			})
		},
	}
}
