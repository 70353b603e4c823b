package main

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	cp "github.com/envplane/envplane/controlplane"
)

// TestEveryLeafOwnsItsFlags: no flag variable is bound by two commands, so
// one command's default can never overwrite another's (member add once sent
// an empty role because member update bound the same variable).
func TestEveryLeafOwnsItsFlags(t *testing.T) {
	a := &app{}
	owner := map[uintptr]string{}
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			v := reflect.ValueOf(f.Value)
			if v.Kind() != reflect.Pointer {
				t.Fatalf("%s --%s: flag value %T is not a pointer", cmd.CommandPath(), f.Name, f.Value)
			}
			where := cmd.CommandPath() + " --" + f.Name
			if prev, ok := owner[v.Pointer()]; ok {
				t.Errorf("%s and %s bind one variable", prev, where)
			}
			owner[v.Pointer()] = where
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(a.rootCommand())
	if len(owner) < 40 {
		t.Fatalf("walked only %d flags: the walk missed commands", len(owner))
	}
}

// TestTimeoutStopsFollowing: a stuck operation is followed up to --timeout,
// then envctl says how to go on following it and exits 1.
func TestTimeoutStopsFollowing(t *testing.T) {
	f := newFakeAPI(t)
	stuck := &cp.Operation{ID: "op_stuck", Kind: cp.OpProvision, Status: cp.OpRunning, Step: "create_database"}
	f.on("GET", "/v1/operations/op_stuck", answer{body: stuck})
	f.on("POST", "/v1/organizations/acme/environments", answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusProvisioning), Operation: stuck}})
	for _, args := range [][]string{
		{"--poll-interval", "1ms", "--timeout", "30ms", "op", "wait", "op_stuck"},
		{"--poll-interval", "1ms", "--timeout", "30ms", "env", "create", "dev", "--org", "acme", "--wait", "0s"},
	} {
		t.Run(strings.Join(args[4:], " "), func(t *testing.T) {
			out, stderr, err := envctl(t, f, args...)
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("err = %v, want a failure with exit status 1", err)
			}
			want := "envctl: operation op_stuck is still running at step create_database after --timeout 30ms; it goes on without envctl: follow it with 'envctl op wait op_stuck'\n"
			if out != "" || !strings.HasSuffix(stderr, want) {
				t.Fatalf("stdout %q, stderr %q, want it to end with %q", out, stderr, want)
			}
		})
	}
	if _, _, err := envctl(t, f, "--timeout", "-1s", "op", "wait", "op_stuck"); exitCode(err) != 2 {
		t.Fatalf("a negative --timeout: err %v, want a usage error", err)
	}
}

// TestDeleteAsksForConfirmation: env delete and org delete go ahead only
// with --yes when nobody can be asked; without it they refuse at once,
// sending nothing.
func TestDeleteAsksForConfirmation(t *testing.T) {
	f := newFakeAPI(t)
	f.on("DELETE", "/v1/organizations/acme", answer{status: 204})
	f.on("DELETE", "/v1/organizations/acme/environments/dev", answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusDeleting),
		Operation: &cp.Operation{ID: "op_del", Kind: cp.OpDeprovision, Status: cp.OpSucceeded}}})
	for _, args := range [][]string{
		{"env", "delete", "dev", "--org", "acme"},
		{"org", "delete", "acme"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			before := len(f.sent())
			_, stderr, err := envctl(t, f, args...)
			if exitCode(err) != 2 || !strings.Contains(stderr, "stdin is not a terminal to ask on; pass --yes") {
				t.Fatalf("err %v, stderr %q: want a refusal naming --yes", err, stderr)
			}
			if len(f.sent()) != before {
				t.Fatal("a refused deletion sent a request")
			}
			if _, stderr, err := envctl(t, f, append(args, "--yes")...); err != nil {
				t.Fatalf("with --yes: %v\n%s", err, stderr)
			}
			if req := f.last(t); req.Method != "DELETE" || len(f.sent()) != before+1 {
				t.Fatalf("with --yes sent %d requests, the last %s", len(f.sent())-before, req.Method)
			}
		})
	}
}

// TestConfirmTyped: only the name typed back confirms.
func TestConfirmTyped(t *testing.T) {
	for _, tc := range []struct {
		typed string
		ok    bool
	}{
		{"dev\n", true},
		{"  dev  \n", true},
		{"dev", true},
		{"y\n", false},
		{"Dev\n", false},
		{"", false},
	} {
		var out bytes.Buffer
		err := confirmTyped(strings.NewReader(tc.typed), &out, "Delete environment dev of acme?", "dev")
		if (err == nil) != tc.ok {
			t.Errorf("typed %q: err %v, want confirmed %v", tc.typed, err, tc.ok)
		}
		if out.String() != "Delete environment dev of acme? Type dev to confirm: " {
			t.Errorf("asked %q", out.String())
		}
	}
	if err := confirmTyped(failingReader{}, &bytes.Buffer{}, "?", "dev"); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("a failing stdin: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }
