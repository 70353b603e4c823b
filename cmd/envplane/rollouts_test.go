package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
)

// appWithConfig builds the app from a configuration file holding yaml.
func appWithConfig(t *testing.T, yaml string) (*app, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "envplane.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	root := &cobra.Command{}
	root.Flags().String("config", "", "")
	if err := root.Flags().Set("config", path); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(root.Flags())
	if err != nil {
		return nil, err
	}
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := a.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return a, nil
}

// TestRolloutConfiguration: rollouts default to development → test →
// staging → production, 4 at once; the configuration changes both, and an
// unknown type or a parallelism that is not positive is refused, naming it.
func TestRolloutConfiguration(t *testing.T) {
	t.Setenv("ENVPLANE_DATA_DIR", t.TempDir())
	a, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(a.svc.RolloutWaves, cp.DefaultRolloutWaves(), slices.Equal) || a.svc.RolloutParallelism != 4 {
		t.Fatalf("default rollouts: %v, %d", a.svc.RolloutWaves, a.svc.RolloutParallelism)
	}
	a, err = appWithConfig(t, "rollouts:\n  waves: [[test, development], [production]]\n  parallelism: 9\n")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]cp.EnvironmentType{{cp.TypeTest, cp.TypeDevelopment}, {cp.TypeProduction}}
	if !slices.EqualFunc(a.svc.RolloutWaves, want, slices.Equal) || a.svc.RolloutParallelism != 9 {
		t.Fatalf("configured rollouts: %v, %d", a.svc.RolloutWaves, a.svc.RolloutParallelism)
	}
	if _, err := appWithConfig(t, "rollouts:\n  waves: [[nightly]]\n"); err == nil || !strings.Contains(err.Error(), "rollouts.waves") {
		t.Fatalf("unknown type: %v, want a refusal naming rollouts.waves", err)
	}
	t.Setenv("ENVPLANE_ROLLOUTS_PARALLELISM", "0")
	if _, err := configuredApp(t); err == nil || !strings.Contains(err.Error(), "rollouts.parallelism") {
		t.Fatalf("parallelism 0: %v, want a refusal naming it", err)
	}
}
