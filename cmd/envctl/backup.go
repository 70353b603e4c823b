package main

import (
	"errors"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

func (a *app) backupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Take and list an environment's backups (--org); restore with env restore"}
	cmd.AddCommand(a.backupCreateCommand(), a.backupListCommand())
	return cmd
}

func backupTable(w *tabwriter.Writer, b *cp.Backup) {
	field(w, "id", b.ID)
	field(w, "status", string(b.Status))
	field(w, "trigger", string(b.Trigger))
	field(w, "size", size(b.SizeBytes))
	field(w, "sha256", b.SHA256)
	field(w, "key", b.KeyID)
	field(w, "format", b.Format)
	field(w, "schema version", itoa(int(b.SchemaVersion)))
	field(w, "created", when(b.CreatedAt))
	field(w, "completed", whenPtr(b.CompletedAt))
	field(w, "error", b.Error)
	field(w, "operation", b.OperationID)
}

func (a *app) backupCreateCommand() *cobra.Command {
	var noWait bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "create ENV",
		Short: "Take a backup of an environment now",
		Long: `Take a backup of an environment now: a consistent copy of its database,
sealed under the keyring and checksummed, in the backup store. The server
holds the answer up to --wait; a longer backup is followed for up to
--timeout, unless --no-wait.`,
		Args: args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			if wait < 0 {
				return usageError{errors.New("--wait must not be negative")}
			}
			ctx := cmd.Context()
			resp, err := a.client.CreateBackup(ctx, org, env, httpapi.WithWait(wait))
			if err != nil {
				return err
			}
			b := resp.Backup
			if !resp.Operation.Status.Done() && !noWait {
				if _, err := a.follow(ctx, resp.Operation); err != nil {
					return err
				}
				if b, err = a.findBackup(cmd, org, env, b.ID); err != nil {
					return err
				}
			}
			return a.show(b, func(w *tabwriter.Writer) { backupTable(w, b) })
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long the server may hold the answer (Prefer: wait)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not follow the backup past --wait")
	return cmd
}

// findBackup reads one backup of an environment from its list.
func (a *app) findBackup(cmd *cobra.Command, org, env, id string) (*cp.Backup, error) {
	opts := httpapi.ListOptions{Limit: cp.MaxPageLimit}
	for {
		page, err := a.client.ListBackups(cmd.Context(), org, env, opts)
		if err != nil {
			return nil, err
		}
		for _, b := range page.Items {
			if b.ID == id {
				return b, nil
			}
		}
		if page.Next == "" {
			return nil, errors.New("the backup is no longer listed")
		}
		opts.Cursor = page.Next
	}
}

func (a *app) backupListCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list ENV",
		Short: "List an environment's backups, newest first",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			bs, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.Backup], error) {
				return a.client.ListBackups(cmd.Context(), org, env, o)
			})
			if err != nil {
				return err
			}
			defer a.more(bs.Next)
			return a.show(bs, func(w *tabwriter.Writer) {
				row(w, "ID", "STATUS", "TRIGGER", "SIZE", "CREATED", "SHA256")
				for _, b := range bs.Items {
					row(w, b.ID, string(b.Status), string(b.Trigger), size(b.SizeBytes), when(b.CreatedAt), dash(b.SHA256))
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) envRestoreCommand() *cobra.Command {
	var req cp.RestoreRequest
	var envType, timestamp string
	var noWait, inPlace bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "restore ENV",
		Short: "Restore a backup of an environment into a new environment",
		Long: `Restore a backup of ENV (--backup) into a new environment (--into), which
is activated once its database verifies against the backup (owner, schema
version, row counts). --timestamp asks for a point in time instead, where
the engine offers one.`,
		Args: args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			if (req.Into == "") == !inPlace {
				return usageError{errors.New("give --into SLUG (a new environment) or --in-place")}
			}
			if timestamp != "" {
				t, err := time.Parse(time.RFC3339, timestamp)
				if err != nil {
					return usageError{errors.New("--timestamp must be RFC 3339, e.g. 2026-01-02T15:04:05Z")}
				}
				req.Timestamp = &t
			}
			if wait < 0 {
				return usageError{errors.New("--wait must not be negative")}
			}
			req.Type = cp.EnvironmentType(envType)
			ctx := cmd.Context()
			v, op, err := a.client.RestoreEnvironment(ctx, org, env, req, httpapi.WithWait(wait))
			if err != nil {
				return err
			}
			if op != nil && !op.Status.Done() {
				if noWait {
					return a.showEnvOperation(v, op)
				}
				if _, err := a.follow(ctx, op); err != nil {
					return err
				}
				target := req.Into
				if inPlace {
					target = env
				}
				if v, err = a.client.GetEnvironment(ctx, org, target); err != nil {
					return err
				}
			}
			return a.show(v, func(w *tabwriter.Writer) { envTable(w, v) })
		},
	}
	cmd.Flags().StringVar(&req.BackupID, "backup", "", "the backup to restore (see backup list)")
	cmd.Flags().StringVar(&timestamp, "timestamp", "", "restore the database as it was at this time (RFC 3339), where the engine offers it")
	cmd.Flags().StringVar(&req.Into, "into", "", "slug of the new environment to restore into")
	cmd.Flags().BoolVar(&inPlace, "in-place", false, "restore over ENV itself (its current state is backed up first)")
	cmd.Flags().StringVar(&envType, "type", "", "type of the new environment (default: the backed-up environment's)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long the server may hold the answer (Prefer: wait)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not follow the restore past --wait")
	return cmd
}
