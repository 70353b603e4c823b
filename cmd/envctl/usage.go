package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
)

// size formats bytes for tables: MiB with one decimal, then the exact count.
func size(b int64) string {
	return fmt.Sprintf("%.1f MiB (%d bytes)", float64(b)/(1<<20), b)
}

// count formats an optional count; the engine may not tell it.
func count(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

func envUsageTable(w *tabwriter.Writer, u *cp.EnvironmentUsage) {
	field(w, "environment", u.Environment)
	field(w, "type", string(u.Type))
	if u.StorageLimitMB > 0 {
		field(w, "storage limit", itoa(u.StorageLimitMB)+" MiB")
	}
	field(w, "over limit", yesNo(u.OverLimit))
	if u.Usage == nil {
		field(w, "measured", "not yet")
		return
	}
	field(w, "size", size(u.Usage.SizeBytes))
	field(w, "tables", count(u.Usage.Tables))
	field(w, "connections", count(u.Usage.Connections))
	field(w, "measured", when(u.Usage.MeasuredAt))
}

func orgUsageTable(w *tabwriter.Writer, u *cp.OrganizationUsage) {
	field(w, "organization", u.Organization)
	field(w, "size", size(u.SizeBytes))
	field(w, "over limit", itoa(u.OverLimit))
	if len(u.Types) == 0 {
		return
	}
	row(w)
	row(w, "TYPE", "ENVIRONMENTS", "MEASURED", "SIZE", "TABLES", "OVER LIMIT")
	for _, t := range u.Types {
		row(w, string(t.Type), itoa(t.Environments), itoa(t.Measured), size(t.SizeBytes), strconv.FormatInt(t.Tables, 10), itoa(t.OverLimit))
	}
}

func (a *app) envUsageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "usage ENV",
		Short: "Show an environment's last measured usage and its storage limit",
		Args:  args("ENV"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, env, err := a.envArg(argv)
			if err != nil {
				return err
			}
			u, err := a.client.EnvironmentUsage(cmd.Context(), org, env)
			if err != nil {
				return err
			}
			return a.show(u, func(w *tabwriter.Writer) { envUsageTable(w, u) })
		},
	}
}

func (a *app) orgUsageCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "usage ORG",
		Short: "Show the organization's last measured usage, summed per environment type",
		Args:  args("ORG"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			u, err := a.client.OrganizationUsage(cmd.Context(), argv[0])
			if err != nil {
				return err
			}
			return a.show(u, func(w *tabwriter.Writer) { orgUsageTable(w, u) })
		},
	}
}
