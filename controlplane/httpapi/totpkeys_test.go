package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestKeyRotationCoversTOTPSecrets: users' TOTP secrets, confirmed or
// still pending, are sealed secrets like credentials. After a key rotation
// the coverage counts them under the old version, retiring it is refused
// (naming them) until a rewrap moves them, and after the retirement the
// users still sign in, or confirm, with a TOTP code: on both stores, and
// with the Vault keyring (whose rewrap is one transit/rewrap per batch).
func TestKeyRotationCoversTOTPSecrets(t *testing.T) {
	for _, tc := range keyringCases() {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts(t)...)
			withPeople(t, h)
			h.org(t, "acme")
			h.person(t, "acme", "kim@example.com", "kim-password-1234", cp.OrgAdmin)
			h.person(t, "acme", "lee@example.com", "lee-password-1234", cp.OrgMember)
			kim, _ := h.session(t, "kim@example.com", "kim-password-1234")
			lee, _ := h.session(t, "lee@example.com", "lee-password-1234")
			var kimTOTP, leeTOTP cp.TOTPEnrolment
			h.must(t, http.StatusCreated, kim, "POST", "/v1/users/me/totp", nil).decode(t, &kimTOTP)
			h.must(t, http.StatusNoContent, kim, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": code(t, kimTOTP.Secret, h.clock.Now())})
			// Lee's enrolment awaits its first code across the rotation.
			h.must(t, http.StatusCreated, lee, "POST", "/v1/users/me/totp", nil).decode(t, &leeTOTP)

			before := h.keyCoverage(t, "GET", "/v1/keyring", nil)
			if !before.Complete() || before.TOTP.Total != 2 || before.TOTP.Current != 2 || before.ByKey[before.CurrentKeyID] < 2 {
				t.Fatalf("coverage before rotating: %+v", before)
			}
			rotated := h.keyCoverage(t, "POST", "/v1/keyring/rotate", nil)
			if rotated.Complete() || rotated.TOTP.Current != 0 || rotated.TOTP.ByKey[before.CurrentKeyID] != 2 {
				t.Fatalf("coverage after rotating: %+v", rotated)
			}
			r := h.do(t, h.admin, "POST", "/v1/keyring/retire", map[string]any{"below": 2})
			wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
			if p := r.problem(t); !strings.Contains(p.Detail, "2 TOTP secrets") {
				t.Fatalf("the refusal does not name the TOTP secrets: %q", p.Detail)
			}

			rewrapped := h.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
			if !rewrapped.Complete() || rewrapped.TOTP.Current != 2 || rewrapped.TOTP.ByKey[rotated.CurrentKeyID] != 2 {
				t.Fatalf("coverage after rewrapping: %+v", rewrapped)
			}
			h.keyCoverage(t, "POST", "/v1/keyring/retire", map[string]any{"below": 2})

			h.clock.Advance(30 * time.Second)
			h.session(t, "kim@example.com", "kim-password-1234", "totp", code(t, kimTOTP.Secret, h.clock.Now()))
			h.must(t, http.StatusNoContent, lee, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": code(t, leeTOTP.Secret, h.clock.Now())})
			h.clock.Advance(30 * time.Second)
			h.session(t, "lee@example.com", "lee-password-1234", "totp", code(t, leeTOTP.Secret, h.clock.Now()))
		})
	}
}

// TestTOTPSecretUnderRetiredKey: a TOTP secret the keyring can no longer
// open (its version retired behind envplane's back) answers sign-in 503,
// the keyring's problem, never a 500.
func TestTOTPSecretUnderRetiredKey(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.person(t, "acme", "kim@example.com", "kim-password-1234", cp.OrgAdmin)
	kim, _ := h.session(t, "kim@example.com", "kim-password-1234")
	var e cp.TOTPEnrolment
	h.must(t, http.StatusCreated, kim, "POST", "/v1/users/me/totp", nil).decode(t, &e)
	h.must(t, http.StatusNoContent, kim, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": code(t, e.Secret, h.clock.Now())})
	h.retireFirstKeyBehindOurBack(t)
	h.clock.Advance(30 * time.Second)
	r := h.do(t, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "totp": code(t, e.Secret, h.clock.Now())})
	wantProblem(t, r, http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
}

// keyringCases are the stores and keyrings a key rotation test runs on:
// the local keyring over each store, and Vault's.
func keyringCases() []struct {
	name string
	opts func(t *testing.T) []harnessOption
} {
	return []struct {
		name string
		opts func(t *testing.T) []harnessOption
	}{
		{"sqlite", func(*testing.T) []harnessOption { return nil }},
		{"postgres", func(*testing.T) []harnessOption { return []harnessOption{withPostgresStore()} }},
		{"vault", func(t *testing.T) []harnessOption { opt, _ := withVault(t); return []harnessOption{opt} }},
	}
}

// retireFirstKeyBehindOurBack rotates the harness's keyring and retires
// its first version straight through the keyring, as an operator working
// on the keyring directly would, without envplane's coverage check.
func (h *harness) retireFirstKeyBehindOurBack(t *testing.T) {
	t.Helper()
	km, ok := h.svc.Keyring.(cp.KeyManager)
	if !ok {
		t.Fatal("the harness's keyring does not rotate")
	}
	if _, err := km.Rotate(t.Context()); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := km.Retire(t.Context(), 2); err != nil {
		t.Fatalf("retire: %v", err)
	}
}
