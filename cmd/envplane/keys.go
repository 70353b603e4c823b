package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
)

// keysCommand closes a key rotation on either keyring, through the same
// service calls as the platform admin's API: rotate, then rewrap, then
// retire, with the coverage at each step.
func keysCommand(stdout, stderr io.Writer) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Manage the keyring's key-encryption keys: status, rotate, rewrap, retire"}
	keys.AddCommand(keysStatusCommand(stdout, stderr), keysRotateCommand(stdout, stderr), keysRewrapCommand(stdout, stderr), keysRetireCommand(stdout, stderr))
	return keys
}

func keysStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the current key version and how many credentials are wrapped under each version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.KeyringStatus(cmd.Context(), cp.Operator())
				if err != nil {
					return err
				}
				return printCoverage(stdout, stderr, cov)
			})
		},
	}
}

func keysRotateCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Add a key version and make it current (local: the key file; vault: transit/keys/:key/rotate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.RotateKeys(cmd.Context(), cp.Operator())
				if err != nil {
					return err
				}
				fmt.Fprintf(stderr, "new key version %s; run `envplane keys rewrap` next\n", cov.CurrentKeyID)
				return printCoverage(stdout, stderr, cov)
			})
		},
	}
}

func keysRewrapCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "rewrap",
		Short: "Re-wrap every credential's and TOTP secret's data key under the current version, in batches; safe to run again after a crash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.Rewrap(cmd.Context(), func(c cp.KeyCoverage) {
					fmt.Fprintf(stderr, "rewrapped: %d of %d under %s\n", c.Current, c.Total, c.CurrentKeyID)
				})
				if err != nil {
					return err
				}
				return printCoverage(stdout, stderr, cov)
			})
		},
	}
}

func keysRetireCommand(stdout, stderr io.Writer) *cobra.Command {
	var below int
	cmd := &cobra.Command{
		Use:   "retire --below N",
		Short: "Stop every key version below N from unwrapping; refused while anything is still wrapped below N",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if below == 0 {
				return fmt.Errorf("--below is required")
			}
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.RetireKeys(cmd.Context(), cp.Operator(), below)
				if err != nil {
					return err
				}
				fmt.Fprintf(stderr, "retired every key version below %d\n", below)
				return printCoverage(stdout, stderr, cov)
			})
		},
	}
	cmd.Flags().IntVar(&below, "below", 0, "retire every version below this one")
	return cmd
}

// printCoverage writes the coverage as JSON on stdout and, for people, one
// line per key version on stderr.
func printCoverage(stdout, stderr io.Writer, cov cp.KeyCoverage) error {
	ids := make([]string, 0, len(cov.ByKey))
	for id := range cov.ByKey {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(stderr, "current %s: %d of %d sealed secrets (TOTP secrets: %d of %d; backups: %d of %d)\n", cov.CurrentKeyID, cov.Current, cov.Total, cov.TOTP.Current, cov.TOTP.Total, cov.Backups.Current, cov.Backups.Total)
	for _, id := range ids {
		fmt.Fprintf(stderr, "  %s: %d\n", id, cov.ByKey[id])
	}
	return json.NewEncoder(stdout).Encode(cov)
}
