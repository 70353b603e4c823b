package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/drivers"
)

// expiry shows when an environment expires, "-" for never, with a "!"
// when that is within 24 hours.
func expiry(e *cp.EnvironmentView) string {
	if e.ExpiresAt == nil {
		return "-"
	}
	if e.Expiring {
		return when(*e.ExpiresAt) + "!"
	}
	return when(*e.ExpiresAt)
}

func envTable(w *tabwriter.Writer, e *cp.EnvironmentView) {
	if e.Environment != nil {
		field(w, "id", e.ID)
		field(w, "slug", e.Slug)
		field(w, "name", e.Name)
		field(w, "type", string(e.Type))
		field(w, "status", string(e.Status))
		field(w, "error", e.Error)
		field(w, "protected", yesNo(e.IsProtected))
		field(w, "expires", whenPtr(e.ExpiresAt))
		if e.Expiring {
			field(w, "expiring", "yes, within 24h")
		}
		field(w, "default", yesNo(e.IsDefault))
		field(w, "region", e.Region)
		field(w, "target", e.Target)
		field(w, "description", e.Description)
		field(w, "created", when(e.CreatedAt))
		field(w, "updated", when(e.UpdatedAt))
	}
	if d := e.Database; d != nil {
		field(w, "database", d.DatabaseName)
		field(w, "driver", d.Driver)
		field(w, "schema version", strconv.FormatInt(d.SchemaVersion, 10))
		field(w, "provisioned", whenPtr(d.ProvisionedAt))
		if d.StorageLimitMB > 0 {
			field(w, "storage limit", itoa(d.StorageLimitMB)+" MiB")
			field(w, "over limit", yesNo(d.OverLimit))
		}
	}
}

func opTable(w *tabwriter.Writer, op *cp.Operation) {
	field(w, "id", op.ID)
	field(w, "kind", string(op.Kind))
	field(w, "status", string(op.Status))
	field(w, "step", op.Step)
	field(w, "attempts", itoa(op.Attempts))
	field(w, "error", op.Error)
	field(w, "environment", op.EnvironmentID)
	field(w, "created", when(op.CreatedAt))
	field(w, "updated", when(op.UpdatedAt))
}

// envArg returns the organization (--org) and the environment named by the
// command's one argument.
func (a *app) envArg(argv []string) (org, env string, err error) {
	org, err = a.needOrg()
	if err != nil {
		return "", "", err
	}
	return org, argv[0], nil
}

// showEnvOperation prints an environment change and its operation: the API's
// 202 body.
func (a *app) showEnvOperation(env *cp.EnvironmentView, op *cp.Operation) error {
	body := cp.EnvironmentOperationResponse{Environment: env, Operation: op}
	return a.show(body, func(w *tabwriter.Writer) {
		if env != nil {
			envTable(w, env)
		}
		if op != nil {
			field(w, "operation", op.ID+" ("+string(op.Status)+")")
		}
	})
}

func (a *app) envCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "env", Short: "Manage environments and their databases (--org)"}
	cmd.AddCommand(
		a.envCreateCommand(),
		a.envListCommand(),
		a.envGetCommand(),
		a.envUpdateCommand(),
		a.envDeleteCommand(),
		a.envResetCommand(),
		a.envUsageCommand(),
		a.envRestoreCommand(),
		a.envStateCommand("suspend", "Suspend an environment: connection lookups answer 423 until resumed", (*httpapi.Client).SuspendEnvironment),
		a.envStateCommand("resume", "Resume a suspended environment", (*httpapi.Client).ResumeEnvironment),
	)
	return cmd
}

func (a *app) envCreateCommand() *cobra.Command {
	var create cp.CreateEnvironmentRequest
	var envType, key string
	var protected, noWait bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "create SLUG",
		Short: "Create an environment and provision its database",
		Long: `Create an environment and provision its database. The server holds the
answer up to --wait; when provisioning takes longer envctl follows the
operation, showing progress on stderr, for up to --timeout, unless --no-wait.`,
		Args: args("SLUG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			create.Slug, create.Type = argv[0], cp.EnvironmentType(envType)
			if cmd.Flags().Changed("protected") {
				create.IsProtected = &protected
			}
			if wait < 0 {
				return usageError{errors.New("--wait must not be negative")}
			}
			opts := append(idempotency(key), httpapi.WithWait(wait))
			ctx := cmd.Context()
			env, op, err := a.client.CreateEnvironment(ctx, org, create, opts...)
			if err != nil {
				return err
			}
			if op != nil && !op.Status.Done() {
				if noWait {
					return a.showEnvOperation(env, op)
				}
				if _, err := a.follow(ctx, op); err != nil {
					return err
				}
				if env, err = a.client.GetEnvironment(ctx, org, create.Slug); err != nil {
					return err
				}
			}
			return a.show(env, func(w *tabwriter.Writer) { envTable(w, env) })
		},
	}
	cmd.Flags().StringVar(&envType, "type", string(cp.TypeDevelopment), "development, test, staging, production, sandbox, preview or trial")
	cmd.Flags().StringVar(&create.Name, "name", "", "display name")
	cmd.Flags().StringVar(&create.Region, "region", "", "region to place the database in")
	cmd.Flags().StringVar(&create.Target, "target", "", "target to create the database on")
	cmd.Flags().StringVar(&create.Description, "description", "", "description")
	cmd.Flags().BoolVar(&protected, "protected", false, "protect from deletion (default: true for production)")
	cmd.Flags().StringVar(&create.TTL, "ttl", "", "expire after this long, e.g. 72h (default: the type's, if any; never for protected or production)")
	cmd.Flags().StringVar(&create.FromEnvironment, "from", "", "create the database as a copy of this environment's (slug or id), with --clone")
	cmd.Flags().StringVar(&create.Clone, "clone", "", "with --from: schema (structure only) or full (structure and rows)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long the server may hold the answer (Prefer: wait)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not follow provisioning past --wait")
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) envListCommand() *cobra.Command {
	var page pageFlags
	var envType, status, target string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the environments you can see",
		Long: `List the environments you can see, narrowed by --type, --status and
--target (--status deleted lists deleted ones).`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			envs, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.EnvironmentView], error) {
				return a.client.ListEnvironments(cmd.Context(), org, httpapi.EnvironmentsOptions{ListOptions: o,
					Type: cp.EnvironmentType(envType), Status: cp.EnvironmentStatus(status), Target: target})
			})
			if err != nil {
				return err
			}
			defer a.more(envs.Next)
			return a.show(envs, func(w *tabwriter.Writer) {
				row(w, "SLUG", "TYPE", "STATUS", "PROTECTED", "EXPIRES", "DRIVER", "REGION", "DATABASE", "ID")
				for _, e := range envs.Items {
					if e.Environment == nil {
						continue
					}
					driver, db := "-", "-"
					if e.Database != nil {
						driver, db = dash(e.Database.Driver), dash(e.Database.DatabaseName)
					}
					row(w, e.Slug, string(e.Type), string(e.Status), yesNo(e.IsProtected), expiry(e), driver, dash(e.Region), db, e.ID)
				}
			})
		},
	}
	page.add(cmd)
	cmd.Flags().StringVar(&envType, "type", "", "only this type: default, development, test, staging, production, sandbox, preview or trial")
	cmd.Flags().StringVar(&status, "status", "", "only this status: provisioning, active, suspended, deleting, deleted or failed")
	cmd.Flags().StringVar(&target, "target", "", "only environments whose database is on this target")
	return cmd
}

func (a *app) envGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ENV",
		Short: "Show an environment and its database",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			e, err := a.client.GetEnvironment(cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(e, func(w *tabwriter.Writer) { envTable(w, e) })
		},
	}
}

func (a *app) envUpdateCommand() *cobra.Command {
	var name, description, ttl string
	var protected bool
	var limit int
	cmd := &cobra.Command{
		Use:   "update ENV",
		Short: "Change an environment's name, description, protection, expiry or storage limit",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			var req cp.UpdateEnvironmentRequest
			if cmd.Flags().Changed("name") {
				req.Name = &name
			}
			if cmd.Flags().Changed("description") {
				req.Description = &description
			}
			if cmd.Flags().Changed("protected") {
				req.IsProtected = &protected
			}
			req.TTL = ttl
			if cmd.Flags().Changed("storage-limit-mb") {
				req.StorageLimitMB = &limit
			}
			if req == (cp.UpdateEnvironmentRequest{}) {
				return usageError{errors.New("nothing to update: pass --name, --description, --protected, --ttl or --storage-limit-mb")}
			}
			e, err := a.client.UpdateEnvironment(cmd.Context(), org, env, req)
			if err != nil {
				return err
			}
			return a.show(e, func(w *tabwriter.Writer) { envTable(w, e) })
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "new display name")
	cmd.Flags().StringVar(&description, "description", "", "new description")
	cmd.Flags().BoolVar(&protected, "protected", false, "protect from deletion (--protected=false to unprotect); protecting removes any expiry")
	cmd.Flags().StringVar(&ttl, "ttl", "", "expire this long from now, e.g. 72h")
	cmd.Flags().IntVar(&limit, "storage-limit-mb", 0, "storage limit in MiB (owner, admin); over it the environment is flagged and, on PostgreSQL, readwrite cannot write")
	return cmd
}

func (a *app) envDeleteCommand() *cobra.Command {
	var noWait, yes bool
	cmd := &cobra.Command{
		Use:   "delete ENV",
		Short: "Delete an environment and drop its database (not protected or default ones)",
		Long: `Delete an environment and drop its database (not protected or default
ones). envctl asks you to type the environment's name first, unless --yes;
without a terminal to ask on it refuses.`,
		Args: args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			if err := a.confirm(yes, "Delete environment "+env+" of "+org+" and drop its database?", env); err != nil {
				return err
			}
			ctx := cmd.Context()
			e, op, err := a.client.DeleteEnvironment(ctx, org, env)
			if err != nil {
				return err
			}
			if op == nil || op.Status.Done() || noWait {
				return a.showDeletion(e, op, env)
			}
			final, err := a.follow(ctx, op)
			if err != nil {
				return err
			}
			return a.showDeletion(e, final, env)
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the database to be dropped")
	yesFlag(cmd, &yes)
	return cmd
}

// envStateCommand builds suspend and resume, which differ only in the
// client method they call (a method expression: the client exists only once
// the command line is parsed).
func (a *app) envStateCommand(use, short string, call func(c *httpapi.Client, ctx context.Context, org, env string, opts ...httpapi.RequestOption) (*cp.EnvironmentView, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ENV",
		Short: short,
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			e, err := call(a.client, cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(e, func(w *tabwriter.Writer) { envTable(w, e) })
		},
	}
}

// showDeletion prints a deletion: the API's body for scripts, and for people
// either the running operation or a confirmation.
func (a *app) showDeletion(env *cp.EnvironmentView, op *cp.Operation, name string) error {
	if a.output == "table" && (op == nil || op.Status.Done()) {
		return a.done("deleted environment " + name)
	}
	return a.showEnvOperation(env, op)
}

func (a *app) connectionCommand() *cobra.Command {
	var scope, envID string
	var dsnOnly bool
	cmd := &cobra.Command{
		Use:   "connection [ORG] ENV",
		Short: "Resolve an environment's connection (the router)",
		Long: `Resolve the connection an application would use. The table shows the
connection without its secret; --dsn prints only the DSN, secret included,
for scripts:

  sqlite3 "$(envctl connection acme dev --dsn)"

-o json prints the API's whole answer, secret included. ORG defaults to
--org; --env-id resolves by environment id instead.`,
		Args: func(_ *cobra.Command, argv []string) error {
			if envID != "" && len(argv) == 0 || envID == "" && (len(argv) == 1 || len(argv) == 2) {
				return nil
			}
			return usageError{errors.New("want [ORG] ENV, or --env-id ID alone")}
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			var conn *cp.Connection
			var err error
			if envID != "" {
				conn, err = a.client.GetConnectionByID(cmd.Context(), envID, cp.Scope(scope))
			} else {
				var org string
				env := argv[len(argv)-1]
				if len(argv) == 2 {
					org = argv[0]
				} else if org, err = a.needOrg(); err != nil {
					return err
				}
				conn, err = a.client.GetConnection(cmd.Context(), org, env, cp.Scope(scope))
			}
			if err != nil {
				return err
			}
			if dsnOnly {
				if _, err := fmt.Fprintln(a.stdout, conn.DSN.Reveal()); err != nil {
					return fmt.Errorf("cannot write output: %w", err)
				}
				return nil
			}
			return a.show(httpapi.RevealConnection(conn), func(w *tabwriter.Writer) {
				field(w, "organization", conn.Organization)
				field(w, "environment", conn.Environment)
				field(w, "environment id", conn.EnvironmentID)
				field(w, "driver", conn.Driver)
				field(w, "scope", string(conn.Scope))
				field(w, "host", conn.Host)
				if conn.Port != 0 {
					field(w, "port", itoa(conn.Port))
				}
				field(w, "database", conn.Database)
				field(w, "username", conn.Username)
				field(w, "credential", conn.CredentialID)
				field(w, "expires", whenPtr(conn.ExpiresAt))
				field(w, "refresh after", when(conn.RefreshAfter))
				field(w, "secret", "hidden (--dsn or -o json to show)")
			})
		},
	}
	cmd.Flags().StringVar(&scope, "scope", string(drivers.ScopeReadWrite), "admin, readwrite or readonly")
	cmd.Flags().StringVar(&envID, "env-id", "", "resolve by environment id")
	cmd.Flags().BoolVar(&dsnOnly, "dsn", false, "print only the DSN (it includes the secret)")
	return cmd
}

func credTable(w *tabwriter.Writer, creds []*cp.Credential) {
	row(w, "ID", "SCOPE", "SLOT", "USERNAME", "STATUS", "ISSUED", "EXPIRES", "ROTATED FROM")
	for _, c := range creds {
		row(w, c.ID, string(c.Scope), string(c.Slot), dash(c.Username), string(c.Status), when(c.IssuedAt), dash(whenPtr(c.ExpiresAt)), dash(c.RotatedFrom))
	}
}

func (a *app) credCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cred", Short: "Manage an environment's database credentials (--org)"}
	cmd.AddCommand(a.credListCommand(), a.credRotateCommand(), a.credRevokeCommand())
	return cmd
}

func (a *app) credListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list ENV",
		Short: "List credentials (metadata only, never secrets)",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			creds, err := a.client.ListCredentials(cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(creds, func(w *tabwriter.Writer) { credTable(w, creds.Items) })
		},
	}
}

// credAnswer shows a rotate or revoke answer, after following its operation
// unless noWait.
func (a *app) credAnswer(ctx context.Context, org, env string, res *cp.CredentialsResponse, noWait bool) error {
	if op := res.Operation; op != nil && !op.Status.Done() && !noWait {
		final, err := a.follow(ctx, op)
		if err != nil {
			return err
		}
		creds, err := a.client.ListCredentials(ctx, org, env)
		if err != nil {
			return err
		}
		res = &cp.CredentialsResponse{Operation: final, Credentials: creds.Items}
	}
	return a.show(res, func(w *tabwriter.Writer) {
		if res.Operation != nil {
			row(w, "operation: "+res.Operation.ID+" ("+string(res.Operation.Status)+")")
		}
		credTable(w, res.Credentials)
	})
}

func (a *app) credRotateCommand() *cobra.Command {
	var rotate cp.RotateCredentialsRequest
	var grace time.Duration
	var key string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "rotate ENV",
		Short: "Rotate credentials; the old ones keep working for the grace period",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("grace") {
				if grace < 0 {
					return usageError{errors.New("--grace must not be negative")}
				}
				secs := int(grace / time.Second)
				rotate.GraceSeconds = &secs
			}
			res, err := a.client.RotateCredentials(cmd.Context(), org, env, rotate, idempotency(key)...)
			if err != nil {
				return err
			}
			return a.credAnswer(cmd.Context(), org, env, res, noWait)
		},
	}
	cmd.Flags().StringVar(&rotate.Scope, "scope", "all", "all, admin, readwrite or readonly")
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old credentials keep working (default: the server's, 15m)")
	cmd.Flags().StringVar(&rotate.Reason, "reason", "", "why, for the audit log")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the rotation to finish")
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) credRevokeCommand() *cobra.Command {
	var revoke cp.RevokeCredentialsRequest
	var key string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "revoke ENV",
		Short: "Emergency: revoke credentials now (one, or all) and issue new ones",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := required(cmd, "reason"); err != nil {
				return err
			}
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			res, err := a.client.RevokeCredentials(cmd.Context(), org, env, revoke, idempotency(key)...)
			if err != nil {
				return err
			}
			return a.credAnswer(cmd.Context(), org, env, res, noWait)
		},
	}
	cmd.Flags().StringVar(&revoke.CredentialID, "credential", "", "revoke only this credential (default: all of the environment's)")
	cmd.Flags().StringVar(&revoke.Reason, "reason", "", "why, for the audit log")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the new credentials")
	idempotencyFlag(cmd, &key)
	return cmd
}

func envMemberRow(w *tabwriter.Writer, m *cp.EnvironmentMember) {
	row(w, dash(m.Email), string(m.Role), m.UserID)
}

func envMemberHeader(w *tabwriter.Writer) { row(w, "EMAIL", "ROLE", "USER ID") }

func (a *app) envMemberCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "env-member", Short: "Manage users' roles on an environment (--org)"}
	cmd.AddCommand(a.envMemberListCommand(), a.envMemberSetCommand(), a.envMemberRemoveCommand())
	return cmd
}

func (a *app) envMemberListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list ENV",
		Short: "List the users holding a role on an environment",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			ms, err := a.client.ListEnvironmentMembers(cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(ms, func(w *tabwriter.Writer) {
				envMemberHeader(w)
				for _, m := range ms.Items {
					envMemberRow(w, m)
				}
			})
		},
	}
}

func (a *app) envMemberSetCommand() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "set ENV USER",
		Short: "Give a user (id or email) a role on an environment, replacing any other",
		Args:  args("ENV", "USER"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := required(cmd, "role"); err != nil {
				return err
			}
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			m, err := a.client.PutEnvironmentMember(cmd.Context(), org, env, argv[1], cp.PutEnvironmentMemberRequest{Role: cp.EnvRole(role)})
			if err != nil {
				return err
			}
			return a.show(m, func(w *tabwriter.Writer) { envMemberHeader(w); envMemberRow(w, m) })
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "env_admin, env_maker, env_user or env_viewer")
	return cmd
}

func (a *app) envMemberRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ENV USER",
		Short: "Remove a user's role on an environment",
		Args:  args("ENV", "USER"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			if err := a.client.RemoveEnvironmentMember(cmd.Context(), org, env, argv[1]); err != nil {
				return err
			}
			return a.done("removed " + argv[1] + " from " + env)
		},
	}
}

func schemaTable(w *tabwriter.Writer, s *cp.SchemaStatus) {
	row(w, "schema version: "+strconv.FormatInt(s.SchemaVersion, 10))
	if len(s.Applied)+len(s.Pending)+len(s.Drift) == 0 {
		return
	}
	row(w)
	row(w, "STATE", "NAMESPACE", "VERSION", "NAME", "APPLIED")
	for _, group := range []struct {
		state string
		ms    []cp.SchemaMigration
	}{{"applied", s.Applied}, {"pending", s.Pending}, {"DRIFT", s.Drift}} {
		for _, m := range group.ms {
			row(w, group.state, dash(m.Namespace), strconv.FormatInt(m.Version, 10), m.Name, dash(whenPtr(m.AppliedAt)))
		}
	}
}

func (a *app) schemaCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "schema", Short: "Inspect and apply an environment's migrations (--org)"}
	cmd.AddCommand(a.schemaStatusCommand(), a.schemaMigrateCommand())
	return cmd
}

func (a *app) schemaStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status ENV",
		Short: "Show applied and pending migrations, and drift",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			s, err := a.client.GetSchema(cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(s, func(w *tabwriter.Writer) { schemaTable(w, s) })
		},
	}
}

func (a *app) schemaMigrateCommand() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "migrate ENV",
		Short: "Apply pending migrations",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			s, err := a.client.MigrateSchema(cmd.Context(), org, env, idempotency(key)...)
			if err != nil {
				return err
			}
			return a.show(s, func(w *tabwriter.Writer) { schemaTable(w, s) })
		},
	}
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) opCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "op", Short: "Inspect long-running operations"}
	cmd.AddCommand(a.opListCommand(), a.opGetCommand(), a.opWaitCommand())
	return cmd
}

func (a *app) opListCommand() *cobra.Command {
	var page pageFlags
	var env, status, kind string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List operations of the environments you can see, newest first (--org)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			ops, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.Operation], error) {
				return a.client.ListOperations(cmd.Context(), org, httpapi.OperationsOptions{ListOptions: o,
					Environment: env, Status: cp.OperationStatus(status), Kind: cp.OperationKind(kind)})
			})
			if err != nil {
				return err
			}
			defer a.more(ops.Next)
			return a.show(ops, func(w *tabwriter.Writer) {
				row(w, "ID", "KIND", "STATUS", "STEP", "ATTEMPTS", "ENVIRONMENT", "UPDATED")
				for _, op := range ops.Items {
					row(w, op.ID, string(op.Kind), string(op.Status), dash(op.Step), itoa(op.Attempts), dash(op.EnvironmentID), when(op.UpdatedAt))
				}
			})
		},
	}
	page.add(cmd)
	cmd.Flags().StringVar(&env, "env", "", "only this environment's (slug or id)")
	cmd.Flags().StringVar(&status, "status", "", "only this status: pending, running, succeeded or failed")
	cmd.Flags().StringVar(&kind, "kind", "", "only this kind: provision, deprovision, rotate, clone, suspend, resume or migrate")
	return cmd
}

func (a *app) opGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an operation",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			op, err := a.client.GetOperation(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.show(op, func(w *tabwriter.Writer) { opTable(w, op) })
		},
	}
}

func (a *app) opWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for an operation to finish, up to --timeout; exit status 1 when it failed",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			// Read it once before the wait, so a timeout can say where it stands.
			op, err := a.client.GetOperation(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			op, err = a.follow(cmd.Context(), op)
			if op != nil {
				if showErr := a.show(op, func(w *tabwriter.Writer) { opTable(w, op) }); showErr != nil {
					return showErr
				}
			}
			return err
		},
	}
}
