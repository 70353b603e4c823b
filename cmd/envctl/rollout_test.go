package main

import (
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

func testRollout(status cp.RolloutStatus, items ...cp.RolloutItemStatus) *cp.RolloutView {
	r := &cp.Rollout{ID: "ro_01", OrgID: "org_01", Version: 2, Parallelism: 4, OnError: cp.OnErrorHalt, Status: status,
		CreatedAt: time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)}
	v := &cp.RolloutView{Rollout: r}
	for i, s := range items {
		v.Environments = append(v.Environments, &cp.RolloutItem{Environment: "e" + itoa(i), Type: cp.TypeDevelopment, Status: s})
		v.Counts.Total++
		switch s {
		case cp.ItemSucceeded:
			v.Counts.Succeeded++
		case cp.ItemFailed:
			v.Counts.Failed++
		case cp.ItemRunning:
			v.Counts.Running++
		case cp.ItemPending:
			v.Counts.Pending++
		}
	}
	if status != cp.RolloutRunning && status != cp.RolloutPaused {
		done := r.CreatedAt.Add(time.Minute)
		r.FinishedAt = &done
	}
	return v
}

// TestRolloutCommandsSendRequests: each rollout command sends its request,
// flags in the body, to the organization's or the platform's routes.
func TestRolloutCommandsSendRequests(t *testing.T) {
	for _, tt := range []struct {
		args               []string
		method, path, body string
	}{
		{[]string{"rollout", "create", "--org", "acme", "--version", "3", "--wave", "development,preview", "--wave", "production", "--parallelism", "8",
			"--canary", "2", "--on-error", "continue", "--pause", "1m"}, "POST", "/v1/organizations/acme/rollouts",
			`{"version":3,"waves":[["development","preview"],["production"]],"parallelism":8,"canary":2,"on_error":"continue","pause_seconds":60}`},
		{[]string{"rollout", "create", "--platform"}, "POST", "/v1/rollouts", `{}`},
		{[]string{"rollout", "status", "ro_01", "--org", "acme"}, "GET", "/v1/organizations/acme/rollouts/ro_01", ""},
		{[]string{"rollout", "pause", "ro_01", "--org", "acme"}, "POST", "/v1/organizations/acme/rollouts/ro_01/pause", ""},
		{[]string{"rollout", "resume", "ro_01", "--platform"}, "POST", "/v1/rollouts/ro_01/resume", ""},
		{[]string{"rollout", "cancel", "ro_01", "--org", "acme"}, "POST", "/v1/organizations/acme/rollouts/ro_01/cancel", ""},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFakeAPI(t)
			f.on(tt.method, tt.path, answer{body: testRollout(cp.RolloutRunning, cp.ItemPending)})
			out, _, err := envctl(t, f, tt.args...)
			if err != nil {
				t.Fatalf("envctl: %v", err)
			}
			req := f.last(t)
			if req.Method != tt.method || req.Path != tt.path || normalizeJSON(t, req.Body) != normalizeJSON(t, tt.body) {
				t.Fatalf("sent %s %s %s", req.Method, req.Path, req.Body)
			}
			if !strings.Contains(out, "ro_01") || !strings.Contains(out, "e0") {
				t.Fatalf("output does not show the rollout: %s", out)
			}
		})
	}
	f := newFakeAPI(t)
	f.on("GET", "/v1/organizations/acme/rollouts", answer{body: cp.List[*cp.Rollout]{Items: []*cp.Rollout{testRollout(cp.RolloutSucceeded).Rollout}}})
	out, _, err := envctl(t, f, "rollout", "list", "--org", "acme")
	if err != nil || !strings.Contains(out, "ro_01") || !strings.Contains(out, "succeeded") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if _, _, err := envctl(t, f, "rollout", "list", "--org", "acme", "--platform"); err == nil {
		t.Fatal("--platform with --org was accepted")
	}
	if _, _, err := envctl(t, f, "rollout", "create", "--org", "acme", "--pause", "1500ms"); err == nil {
		t.Fatal("a pause that is not whole seconds was accepted")
	}
}

// TestRolloutWatch: --watch polls until the rollout ends, drawing a line
// of progress per change on stderr (not a terminal), shows the result, and
// exits with an error when the rollout failed.
func TestRolloutWatch(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/organizations/acme/rollouts/ro_01",
		answer{body: testRollout(cp.RolloutRunning, cp.ItemPending, cp.ItemPending)},
		answer{body: testRollout(cp.RolloutRunning, cp.ItemSucceeded, cp.ItemRunning)},
		answer{body: testRollout(cp.RolloutRunning, cp.ItemSucceeded, cp.ItemRunning)},
		answer{body: testRollout(cp.RolloutSucceeded, cp.ItemSucceeded, cp.ItemSucceeded)})
	out, errOut, err := envctl(t, f, "rollout", "status", "ro_01", "--org", "acme", "--watch", "--poll-interval", "1ms")
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, errOut)
	}
	want := []string{
		"[------------------------------] 0/2 running, phase 0: 0 succeeded, 0 failed, 0 skipped, 0 running",
		"[###############---------------] 1/2 running, phase 0: 1 succeeded, 0 failed, 0 skipped, 1 running",
		"[##############################] 2/2 succeeded, phase 0: 2 succeeded, 0 failed, 0 skipped, 0 running",
	}
	if got := strings.Split(strings.TrimSpace(errOut), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("progress:\n%s\nwant:\n%s", errOut, strings.Join(want, "\n"))
	}
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("the result is not shown: %s", out)
	}

	f.on("GET", "/v1/organizations/acme/rollouts/ro_01", answer{body: testRollout(cp.RolloutFailed, cp.ItemSucceeded, cp.ItemFailed)})
	if _, _, err := envctl(t, f, "rollout", "status", "ro_01", "--org", "acme", "--watch", "--poll-interval", "1ms"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("a failed rollout is not an error: %v", err)
	}
}
