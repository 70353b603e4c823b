package main

import (
	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
)

// envResetCommand replaces an environment's database contents.
func (a *app) envResetCommand() *cobra.Command {
	var noWait, yes bool
	req := cp.ResetEnvironmentRequest{Mode: cp.ResetFull}
	cmd := &cobra.Command{
		Use:   "reset ENV",
		Short: "Replace an environment's database contents with a copy of another environment's, or an empty schema",
		Long: `Replace an environment's database contents: with --mode full (the
default) by a fresh copy of --from, or of the environment it was cloned from
when --from is not given; with --mode schema by an empty database with the
migrations applied. The environment id, its credentials and its DSN do not
change, so applications keep working; their sessions may be ended once, at the
swap. Protected environments are refused. What the database held is gone:
envctl asks you to type the environment's name first, unless --yes; without a
terminal to ask on it refuses. It follows the operation, showing progress on
stderr, for up to --timeout, unless --no-wait.`,
		Args: args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			what := "an empty schema"
			switch {
			case req.Mode != cp.ResetFull:
			case req.FromEnvironment != "":
				what = "a copy of " + req.FromEnvironment
			default:
				what = "a copy of the environment it was cloned from"
			}
			if err := a.confirm(yes, "Replace everything in environment "+env+" of "+org+" with "+what+"?", env); err != nil {
				return err
			}
			ctx := cmd.Context()
			e, op, err := a.client.ResetEnvironment(ctx, org, env, req)
			if err != nil {
				return err
			}
			if op == nil || op.Status.Done() || noWait {
				return a.showEnvOperation(e, op)
			}
			final, err := a.follow(ctx, op)
			if err != nil {
				return err
			}
			if a.output == "table" {
				return a.done("reset environment " + env)
			}
			return a.showEnvOperation(e, final)
		},
	}
	cmd.Flags().StringVar(&req.FromEnvironment, "from", "", "copy this environment (slug or id); default: the one ENV was cloned from")
	cmd.Flags().StringVar(&req.Mode, "mode", cp.ResetFull, "full (a copy with rows) or schema (empty, migrations applied)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the reset to finish")
	yesFlag(cmd, &yes)
	return cmd
}
