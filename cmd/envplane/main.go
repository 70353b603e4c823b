// Command envplane is the control-plane server and its operator commands:
// serve, bootstrap, migrate, keys, reconcile.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envplane:", err)
		os.Exit(1)
	}
}

// run executes one envplane command with args, writing results to stdout and
// logs and messages to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "envplane",
		Short:         "envplane: a dedicated, isolated database for every environment",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.String("config", "", "YAML configuration file (also ENVPLANE_CONFIG)")
	pf.String("data-dir", "", "directory of the embedded default (ENVPLANE_DATA_DIR, default ./data)")
	pf.String("store-url", "", "control-plane store: postgres://... or an SQLite path (ENVPLANE_STORE_URL)")
	pf.String("log-level", "", "debug, info, warn or error (ENVPLANE_LOG_LEVEL)")
	serve := serveCommand(stderr)
	serve.Flags().String("listen", "", "address to listen on (ENVPLANE_LISTEN, default 127.0.0.1:8080)")
	root.AddCommand(serve, bootstrapCommand(stdout, stderr), migrateCommand(stderr), keysCommand(stdout, stderr), reconcileCommand(stdout, stderr))
	return root.ExecuteContext(ctx)
}

// withApp loads the configuration for cmd, builds the app, runs fn and closes it.
func withApp(cmd *cobra.Command, logOut io.Writer, fn func(a *app) error) error {
	cfg, err := loadConfig(cmd.Flags())
	if err != nil {
		return err
	}
	a, err := newApp(cmd.Context(), cfg, logOut)
	if err != nil {
		return err
	}
	err = fn(a)
	if cerr := a.close(); err == nil {
		err = cerr
	}
	return err
}
