package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// pageFlags are the pagination flags of list commands.
type pageFlags struct {
	limit  int
	cursor string
	all    bool
}

func (p *pageFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&p.limit, "limit", 0, "largest number of items per page (default: the server's)")
	cmd.Flags().StringVar(&p.cursor, "cursor", "", "start after this cursor (the previous page's next)")
	cmd.Flags().BoolVar(&p.all, "all", false, "fetch every page")
}

// list fetches one page, or every page with --all, into one List.
func list[T any](p pageFlags, fetch func(httpapi.ListOptions) (*cp.List[T], error)) (*cp.List[T], error) {
	opts := httpapi.ListOptions{Limit: p.limit, Cursor: p.cursor}
	out := &cp.List[T]{Items: []T{}}
	for {
		page, err := fetch(opts)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, page.Items...)
		out.Next = page.Next
		if !p.all || page.Next == "" {
			return out, nil
		}
		if page.Next == opts.Cursor {
			return nil, fmt.Errorf("cannot list every page: the server repeated cursor %q", page.Next)
		}
		opts.Cursor = page.Next
	}
}

// more tells people, on stderr so stdout stays the table, how to get the next page.
func (a *app) more(next string) {
	if next != "" && a.output == "table" {
		fmt.Fprintf(a.stderr, "more: --cursor %s (or --all)\n", next)
	}
}

// yesFlag adds --yes to a command that asks for confirmation.
func yesFlag(cmd *cobra.Command, yes *bool) {
	cmd.Flags().BoolVarP(yes, "yes", "y", false, "do not ask for confirmation")
}

// idempotencyFlag adds --idempotency-key to a POST command.
func idempotencyFlag(cmd *cobra.Command, key *string) {
	cmd.Flags().StringVar(key, "idempotency-key", "", "send this Idempotency-Key: a retry with the same key replays the first answer")
}

func idempotency(key string) []httpapi.RequestOption {
	if key == "" {
		return nil
	}
	return []httpapi.RequestOption{httpapi.WithIdempotencyKey(key)}
}

func (a *app) meCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "me",
		Short: "Show the calling API key, its user, organizations and roles",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			me, err := a.client.Me(cmd.Context())
			if err != nil {
				return err
			}
			return a.show(me, func(w *tabwriter.Writer) {
				field(w, "key", me.KeyID)
				if me.User != nil {
					field(w, "user", me.User.Email+" ("+me.User.ID+")")
				}
				field(w, "platform admin", yesNo(me.PlatformAdmin))
				field(w, "environment", me.EnvironmentID)
				field(w, "max scope", string(me.MaxScope))
				if len(me.Organizations) > 0 {
					row(w)
					row(w, "ORGANIZATION", "NAME", "ROLE", "ID")
					for _, m := range me.Organizations {
						row(w, m.Slug, m.Name, string(m.Role), m.ID)
					}
				}
			})
		},
	}
}

// storageQuota shows a max_storage_mb: "none" for 0.
func storageQuota(mb int) string {
	if mb == 0 {
		return "none"
	}
	return itoa(mb) + " MB"
}

func orgTable(w *tabwriter.Writer, o *cp.Organization) {
	field(w, "id", o.ID)
	field(w, "slug", o.Slug)
	field(w, "name", o.Name)
	field(w, "require 2fa", yesNo(o.Require2FA))
	field(w, "max environments", itoa(o.MaxEnvironments))
	field(w, "max storage", storageQuota(o.MaxStorageMB))
	field(w, "created", when(o.CreatedAt))
	field(w, "updated", when(o.UpdatedAt))
}

func (a *app) orgCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "org", Short: "Manage organizations"}
	cmd.AddCommand(a.orgCreateCommand(), a.orgListCommand(), a.orgGetCommand(), a.orgUpdateCommand(), a.orgDeleteCommand())
	cmd.AddCommand(a.orgUsageCommand())
	return cmd
}

func (a *app) orgCreateCommand() *cobra.Command {
	var create cp.CreateOrganizationRequest
	var require2FA, noWait bool
	var maxEnvs, maxStorage int
	var key string
	cmd := &cobra.Command{
		Use:   "create SLUG",
		Short: "Create an organization and provision its default environment (platform admin)",
		Args:  args("SLUG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			create.Slug = argv[0]
			if cmd.Flags().Changed("require-2fa") {
				create.Require2FA = &require2FA
			}
			if cmd.Flags().Changed("max-environments") {
				create.MaxEnvironments = &maxEnvs
			}
			if cmd.Flags().Changed("max-storage-mb") {
				create.MaxStorageMB = &maxStorage
			}
			ctx := cmd.Context()
			res, err := a.client.CreateOrganization(ctx, create, idempotency(key)...)
			if err != nil {
				return err
			}
			if res.Operation != nil && !res.Operation.Status.Done() && !noWait && res.DefaultEnvironment != nil && res.DefaultEnvironment.Environment != nil {
				if _, err := a.follow(ctx, res.Operation); err != nil {
					return err
				}
				if res.DefaultEnvironment, err = a.client.GetEnvironment(ctx, res.Organization.ID, res.DefaultEnvironment.ID); err != nil {
					return err
				}
				res.Operation = nil
			}
			return a.show(res, func(w *tabwriter.Writer) {
				orgTable(w, res.Organization)
				if e := res.DefaultEnvironment; e != nil && e.Environment != nil {
					field(w, "default environment", e.Slug+" ("+string(e.Status)+")")
				}
				if res.Operation != nil {
					field(w, "operation", res.Operation.ID+" ("+string(res.Operation.Status)+")")
				}
			})
		},
	}
	cmd.Flags().StringVar(&create.Name, "name", "", "display name")
	cmd.Flags().BoolVar(&require2FA, "require-2fa", false, "require two-factor authentication of members")
	cmd.Flags().IntVar(&maxEnvs, "max-environments", 0, "quota of environments (platform admin)")
	cmd.Flags().IntVar(&maxStorage, "max-storage-mb", 0, "storage quota in MB, 0 for none (platform admin)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the default environment to be provisioned")
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) orgListCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the organizations you can see",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			orgs, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.Organization], error) {
				return a.client.ListOrganizations(cmd.Context(), o)
			})
			if err != nil {
				return err
			}
			defer a.more(orgs.Next)
			return a.show(orgs, func(w *tabwriter.Writer) {
				row(w, "SLUG", "NAME", "MAX ENVS", "CREATED", "ID")
				for _, o := range orgs.Items {
					row(w, o.Slug, dash(o.Name), itoa(o.MaxEnvironments), when(o.CreatedAt), o.ID)
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) orgGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ORG",
		Short: "Show an organization",
		Args:  args("ORG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			o, err := a.client.GetOrganization(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.show(o, func(w *tabwriter.Writer) { orgTable(w, o) })
		},
	}
}

func (a *app) orgUpdateCommand() *cobra.Command {
	var name string
	var require2FA bool
	var maxEnvs, maxStorage int
	cmd := &cobra.Command{
		Use:   "update ORG",
		Short: "Change an organization's name, 2FA rule or quota (owner)",
		Args:  args("ORG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var req cp.UpdateOrganizationRequest
			if cmd.Flags().Changed("name") {
				req.Name = &name
			}
			if cmd.Flags().Changed("require-2fa") {
				req.Require2FA = &require2FA
			}
			if cmd.Flags().Changed("max-environments") {
				req.MaxEnvironments = &maxEnvs
			}
			if cmd.Flags().Changed("max-storage-mb") {
				req.MaxStorageMB = &maxStorage
			}
			if req == (cp.UpdateOrganizationRequest{}) {
				return usageError{errors.New("nothing to update: pass --name, --require-2fa, --max-environments or --max-storage-mb")}
			}
			o, err := a.client.UpdateOrganization(cmd.Context(), argv[0], req)
			if err != nil {
				return err
			}
			return a.show(o, func(w *tabwriter.Writer) { orgTable(w, o) })
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "new display name")
	cmd.Flags().BoolVar(&require2FA, "require-2fa", false, "require two-factor authentication of members")
	cmd.Flags().IntVar(&maxEnvs, "max-environments", 0, "quota of environments (platform admin)")
	cmd.Flags().IntVar(&maxStorage, "max-storage-mb", 0, "storage quota in MB, 0 for none (platform admin)")
	return cmd
}

func (a *app) orgDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete ORG",
		Short: "Delete an organization (owner; only its default environment may remain)",
		Long: `Delete an organization (owner; only its default environment may remain).
envctl asks you to type the organization's name first, unless --yes; without
a terminal to ask on it refuses.`,
		Args: args("ORG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.confirm(yes, "Delete organization "+argv[0]+" and its default environment's database?", argv[0]); err != nil {
				return err
			}
			if err := a.client.DeleteOrganization(cmd.Context(), argv[0]); err != nil {
				return err
			}
			return a.done("deleted organization " + argv[0])
		},
	}
	yesFlag(cmd, &yes)
	return cmd
}

// done confirms a change that has no answer body: a line for people, and
// nothing for scripts (the exit status says it).
func (a *app) done(msg string) error {
	if a.output == "table" {
		fmt.Fprintln(a.stdout, msg)
	}
	return nil
}

func memberRow(w *tabwriter.Writer, m *cp.OrgMembership) {
	row(w, dash(m.Email), dash(m.Name), string(m.Role), m.UserID)
}

func memberHeader(w *tabwriter.Writer) { row(w, "EMAIL", "NAME", "ROLE", "USER ID") }

func (a *app) memberCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Manage an organization's members (--org)"}
	cmd.AddCommand(a.memberListCommand(), a.memberAddCommand(), a.memberUpdateCommand(), a.memberRemoveCommand(), a.memberRevokeSessionsCommand())
	return cmd
}

func (a *app) memberListCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List members",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			ms, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.OrgMembership], error) {
				return a.client.ListMembers(cmd.Context(), org, o)
			})
			if err != nil {
				return err
			}
			defer a.more(ms.Next)
			return a.show(ms, func(w *tabwriter.Writer) {
				memberHeader(w)
				for _, m := range ms.Items {
					memberRow(w, m)
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) memberAddCommand() *cobra.Command {
	var add cp.AddMemberRequest
	var role, key string
	cmd := &cobra.Command{
		Use:   "add EMAIL",
		Short: "Give a user a role in the organization; a new email creates the user",
		Args:  args("EMAIL"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			add.Email, add.Role = argv[0], cp.OrgRole(role)
			m, err := a.client.AddMember(cmd.Context(), org, add, idempotency(key)...)
			if err != nil {
				return err
			}
			return a.show(m, func(w *tabwriter.Writer) { memberHeader(w); memberRow(w, m) })
		},
	}
	cmd.Flags().StringVar(&role, "role", string(cp.OrgMember), "owner, admin or member")
	cmd.Flags().StringVar(&add.Name, "name", "", "the user's name, for a new user")
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) memberUpdateCommand() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "update USER",
		Short: "Change a member's role (USER is an id or email)",
		Args:  args("USER"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := required(cmd, "role"); err != nil {
				return err
			}
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			m, err := a.client.UpdateMember(cmd.Context(), org, argv[0], cp.UpdateMemberRequest{Role: cp.OrgRole(role)})
			if err != nil {
				return err
			}
			return a.show(m, func(w *tabwriter.Writer) { memberHeader(w); memberRow(w, m) })
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "owner, admin or member")
	return cmd
}

func (a *app) memberRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove USER",
		Short: "Remove a member (USER is an id or email)",
		Args:  args("USER"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			if err := a.client.RemoveMember(cmd.Context(), org, argv[0]); err != nil {
				return err
			}
			return a.done("removed " + argv[0] + " from " + org)
		},
	}
}

func keyRow(w *tabwriter.Writer, k *cp.APIKey) {
	status := "active"
	switch {
	case k.RevokedAt != nil:
		status = "revoked"
	case k.ExpiresAt != nil && !k.ExpiresAt.After(time.Now()):
		status = "expired"
	}
	row(w, k.ID, dash(k.Name), k.Prefix, status, dash(k.UserID), dash(k.EnvironmentID), dash(string(k.MaxScope)), dash(whenPtr(k.ExpiresAt)), dash(whenPtr(k.LastUsedAt)))
}

func keyHeader(w *tabwriter.Writer) {
	row(w, "ID", "NAME", "PREFIX", "STATUS", "USER", "ENVIRONMENT", "MAX SCOPE", "EXPIRES", "LAST USED")
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage API keys (--org)"}
	cmd.AddCommand(a.keyListCommand(), a.keyCreateCommand(), a.keyGetCommand(), a.keyRevokeCommand())
	return cmd
}

func (a *app) keyListCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API keys",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			keys, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.APIKey], error) {
				return a.client.ListAPIKeys(cmd.Context(), org, o)
			})
			if err != nil {
				return err
			}
			defer a.more(keys.Next)
			return a.show(keys, func(w *tabwriter.Writer) {
				keyHeader(w)
				for _, k := range keys.Items {
					keyRow(w, k)
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) keyCreateCommand() *cobra.Command {
	var create cp.CreateAPIKeyRequest
	var maxScope, key string
	var expiresIn time.Duration
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an API key; its token is printed once",
		Long: `Create an API key. Without --env it is a user key (for --user, default
yourself); with --env it is an app key bound to that environment, allowed up
to --max-scope. The token is printed this once: store it now.`,
		Args: args("NAME"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			create.Name, create.MaxScope = argv[0], cp.Scope(maxScope)
			if expiresIn < 0 {
				return usageError{errors.New("--expires-in must be positive")}
			}
			if expiresIn > 0 {
				at := time.Now().Add(expiresIn).UTC().Truncate(time.Second)
				create.ExpiresAt = &at
			}
			k, err := a.client.CreateAPIKey(cmd.Context(), org, create, idempotency(key)...)
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintln(a.stderr, "This token is shown only once: store it now.")
			}
			return a.show(k, func(w *tabwriter.Writer) {
				field(w, "id", k.ID)
				field(w, "name", k.Name)
				field(w, "user", k.User)
				field(w, "environment", k.Environment)
				field(w, "max scope", string(k.MaxScope))
				field(w, "expires", whenPtr(k.ExpiresAt))
				field(w, "token", k.Token)
			})
		},
	}
	cmd.Flags().StringVar(&create.User, "user", "", "the user (id or email) of a user key (default: you)")
	cmd.Flags().StringVar(&create.Environment, "env", "", "make an app key bound to this environment (slug or id)")
	cmd.Flags().StringVar(&maxScope, "max-scope", "", "highest scope of an app key: admin, readwrite or readonly (default readonly)")
	cmd.Flags().DurationVar(&expiresIn, "expires-in", 0, "expire the key after this long (e.g. 720h)")
	idempotencyFlag(cmd, &key)
	return cmd
}

func (a *app) keyGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show an API key (never its token)",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			k, err := a.client.GetAPIKey(cmd.Context(), org, argv[0])
			if err != nil {
				return err
			}
			return a.show(k, func(w *tabwriter.Writer) { keyHeader(w); keyRow(w, k) })
		},
	}
}

func (a *app) keyRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key now",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			if err := a.client.RevokeAPIKey(cmd.Context(), org, argv[0]); err != nil {
				return err
			}
			return a.done("revoked key " + argv[0])
		},
	}
}

func (a *app) auditCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List an organization's audit events, newest first (--org)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			events, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.AuditEvent], error) {
				return a.client.ListAuditEvents(cmd.Context(), org, o)
			})
			if err != nil {
				return err
			}
			defer a.more(events.Next)
			return a.show(events, func(w *tabwriter.Writer) {
				row(w, "TIME", "ACTOR", "ACTION", "TARGET", "ENVIRONMENT", "REQUEST")
				for _, e := range events.Items {
					row(w, when(e.CreatedAt), dash(e.Actor), e.Action, dash(e.Target), dash(e.EnvironmentID), dash(e.RequestID))
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) openAPICommand() *cobra.Command {
	return &cobra.Command{
		Use:   "openapi",
		Short: "Print the API's OpenAPI document (JSON)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc, err := a.client.OpenAPI(cmd.Context())
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(a.stdout, string(doc)); err != nil {
				return fmt.Errorf("cannot write output: %w", err)
			}
			return nil
		},
	}
}
