package main

import (
	"strings"
	"testing"
	"time"
)

// TestUsageConfiguration: the measurement's pace has defaults, comes from
// ENVPLANE_USAGE_*, and a value that is not positive is refused, naming it.
func TestUsageConfiguration(t *testing.T) {
	t.Setenv("ENVPLANE_DATA_DIR", t.TempDir())
	a, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	if a.svc.UsageInterval != 5*time.Minute || a.svc.UsageBatch != 100 {
		t.Fatalf("default usage pace: every %v, %d per pass; want 5m and 100", a.svc.UsageInterval, a.svc.UsageBatch)
	}
	t.Setenv("ENVPLANE_USAGE_INTERVAL", "90s")
	t.Setenv("ENVPLANE_USAGE_BATCH", "7")
	if a, err = configuredApp(t); err != nil {
		t.Fatal(err)
	}
	if a.svc.UsageInterval != 90*time.Second || a.svc.UsageBatch != 7 {
		t.Fatalf("configured usage pace: every %v, %d per pass; want 90s and 7", a.svc.UsageInterval, a.svc.UsageBatch)
	}
	t.Setenv("ENVPLANE_USAGE_BATCH", "0")
	if _, err := configuredApp(t); err == nil || !strings.Contains(err.Error(), "usage.batch") {
		t.Fatalf("usage.batch 0: %v, want a refusal naming it", err)
	}
}
