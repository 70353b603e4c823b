package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/envplane/envplane/controlplane/keyring/local"
)

func keysCommand(stdout, stderr io.Writer) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Manage the keyring's key-encryption keys"}
	keys.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Add a new key version to the local key file; new data keys are wrapped under it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			if os.Getenv("ENVPLANE_MASTER_KEY") != "" {
				return fmt.Errorf("keys come from ENVPLANE_MASTER_KEY: add a version there instead")
			}
			v, err := local.AddVersion(cfg.Keyring.KeyFile)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "added key version %s; run `envplane keys rewrap` next\n", local.KeyID(v))
			return err
		},
	})
	keys.AddCommand(&cobra.Command{
		Use:   "rewrap",
		Short: "Re-wrap every credential's data key under the newest key version and report coverage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.Rewrap(cmd.Context())
				if err != nil {
					return err
				}
				return json.NewEncoder(stdout).Encode(cov)
			})
		},
	})
	keys.AddCommand(&cobra.Command{
		Use:   "retire VERSION",
		Short: "Remove an old key version; refused unless coverage of the current version is 100%",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("VERSION must be a number")
			}
			return withApp(cmd, stderr, func(a *app) error {
				cov, err := a.svc.Coverage(cmd.Context())
				if err != nil {
					return err
				}
				if !cov.Complete() {
					return fmt.Errorf("coverage is %d of %d: run `envplane keys rewrap` first", cov.Current, cov.Total)
				}
				if err := local.Retire(a.cfg.Keyring.KeyFile, v); err != nil {
					return err
				}
				_, err = fmt.Fprintf(stdout, "retired key version %s\n", local.KeyID(v))
				return err
			})
		},
	})
	return keys
}
