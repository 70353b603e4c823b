// Command envctl is the command-line client of envplane's API, for people
// (tables) and scripts (-o json: the API's JSON). It reads the API's address
// from ENVPLANE_URL (default http://127.0.0.1:8080) and the API key from
// ENVPLANE_TOKEN; the key is never accepted as a flag, so it stays out of
// shell history and process listings.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

const defaultURL = "http://127.0.0.1:8080"

// defaultTimeout bounds how long envctl follows an operation: long enough for
// any provisioning envplane does, short enough that a stuck one is noticed.
const defaultTimeout = 5 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		os.Exit(exitCode(err))
	}
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode is 2 for a bad command line and 1 for every other failure.
func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// app is one invocation's state: where to read and write, the flags every
// command shares, and the client built from them.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	url     string
	output  string
	org     string
	poll    time.Duration
	timeout time.Duration

	client *httpapi.Client
	// saved is the session envctl login kept, if any.
	saved *savedSession
}

// run executes one envctl command line (args without the program name),
// reading confirmations from stdin when it is a terminal. It reports failures
// on stderr, the problem's detail and fields at fault, and returns the error
// so main can choose the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		a.report(err)
	}
	return err
}

// report writes err for people: the message, then one line per field at fault.
func (a *app) report(err error) {
	fmt.Fprintf(a.stderr, "envctl: %v\n", err)
	var e *cp.Error
	if errors.As(err, &e) {
		for _, f := range e.Fields {
			fmt.Fprintf(a.stderr, "  %s: %s\n", f.Field, f.Message)
		}
	}
	if errors.As(err, new(usageError)) {
		fmt.Fprintln(a.stderr, "Run 'envctl --help' for usage.")
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "envctl",
		Short: "Manage envplane organizations, environments and their databases",
		Long: `envctl calls envplane's API.

Environment:
  ENVPLANE_URL    the API's address (default ` + defaultURL + `)
  ENVPLANE_TOKEN  the API key (otherwise the session of envctl login)
  ENVPLANE_ORG    the default for --org (otherwise the session's envctl use)
  ENVPLANE_CONFIG_DIR  where envctl login keeps the session (default: the user's configuration directory)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	flags := root.PersistentFlags()
	flags.StringVar(&a.url, "url", "", "the API's address (default $ENVPLANE_URL or "+defaultURL+")")
	flags.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	flags.StringVar(&a.org, "org", "", "organization slug or id (default $ENVPLANE_ORG)")
	flags.DurationVar(&a.poll, "poll-interval", time.Second, "how often to poll a running operation")
	flags.DurationVar(&a.timeout, "timeout", defaultTimeout, "how long to follow a running operation before giving up (0: no limit); the operation goes on")
	root.AddCommand(
		a.meCommand(),
		a.orgCommand(),
		a.memberCommand(),
		a.keyCommand(),
		a.auditCommand(),
		a.envCommand(),
		a.connectionCommand(),
		a.credCommand(),
		a.envMemberCommand(),
		a.schemaCommand(),
		a.opCommand(),
		a.rolloutCommand(),
		a.openAPICommand(),
		a.loginCommand(),
		a.logoutCommand(),
		a.useCommand(),
		a.sessionCommand(),
		a.totpCommand(),
		a.inviteCommand(),
		a.backupCommand(),
	)
	return root
}

// setup checks the shared flags and builds the client.
func (a *app) setup() error {
	if a.output != "table" && a.output != "json" {
		return usageError{fmt.Errorf("unknown output %q: want table or json", a.output)}
	}
	if a.poll <= 0 {
		return usageError{errors.New("--poll-interval must be positive")}
	}
	if a.timeout < 0 {
		return usageError{errors.New("--timeout must not be negative")}
	}
	if a.url == "" {
		a.url = a.getenv("ENVPLANE_URL")
	}
	a.loadSession()
	if a.url == "" && a.saved != nil {
		a.url = a.saved.URL
	}
	if a.url == "" {
		a.url = defaultURL
	}
	if a.org == "" {
		a.org = a.getenv("ENVPLANE_ORG")
	}
	if a.org == "" && a.saved != nil && a.token() == a.saved.Token {
		a.org = a.saved.Organization
	}
	a.client = httpapi.NewClient(a.url, a.token())
	a.client.UserAgent = "envctl"
	return nil
}

// needOrg returns the organization of --org or $ENVPLANE_ORG.
func (a *app) needOrg() (string, error) {
	if a.org == "" {
		return "", usageError{errors.New("no organization: pass --org or set ENVPLANE_ORG")}
	}
	return a.org, nil
}

// required returns a usage error naming the first of the flags that the
// command line did not set.
func required(cmd *cobra.Command, names ...string) error {
	for _, name := range names {
		if !cmd.Flags().Changed(name) {
			return usageError{fmt.Errorf("--%s is required", name)}
		}
	}
	return nil
}

// args checks the number of positional arguments, naming them in the error.
func args(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, got []string) error {
		if len(got) != len(names) {
			return usageError{fmt.Errorf("want %d argument(s) %v, got %d", len(names), names, len(got))}
		}
		return nil
	}
}
