package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/envplane/envplane/drivers"
)

// TOTP (RFC 6238) as authenticator apps use it: SHA-1, 6 digits, 30-second
// steps, a code accepted one step early or late for clock drift.
const (
	totpPeriod = 30
	totpSkew   = 1
	// recoveryCodes is how many one-time recovery codes an enrolment gives.
	recoveryCodes = 10
)

// totpAAD binds a sealed TOTP secret to its user, as a credential's seal
// binds it to its credential and database.
const totpAAD = "totp"

// TOTPEnrolment is what an enrolment shows once: the secret (also as an
// otpauth URL and a QR code PNG, base64) and the recovery codes.
type TOTPEnrolment struct {
	Secret        string   `json:"secret"`
	URL           string   `json:"otpauth_url"`
	QRCodePNG     string   `json:"qr_code_png"`
	RecoveryCodes []string `json:"recovery_codes"`
	// Confirm says how to finish: the enrolment counts once a first code is confirmed.
	Confirm string `json:"confirm"`
}

// ConfirmTOTPRequest finishes an enrolment with a first code.
type ConfirmTOTPRequest struct {
	Code drivers.Secret `json:"code"`
}

// EnrolTOTP starts a TOTP enrolment for the signed-in user: a new secret,
// sealed in the store, and new recovery codes, stored hashed. It takes
// effect once ConfirmTOTP accepts a first code. Only a session may enrol
// (a second factor guards sign-in, so it is set from a sign-in, not with an
// API key); an enrolment already confirmed is ECONFLICT.
func (s *Service) EnrolTOTP(ctx context.Context, p *Principal) (*TOTPEnrolment, error) {
	if err := userPrincipal(p); err != nil {
		return nil, err
	}
	if p.SessionID == "" {
		return nil, Errorf(EFORBIDDEN, "forbidden: sign in (POST /v1/sessions, envctl login) to enrol a second factor")
	}
	a, err := s.Store.GetUserAuth(ctx, p.UserID)
	switch {
	case IsCode(err, ENOTFOUND):
		a = &UserAuth{UserID: p.UserID}
	case err != nil:
		return nil, err
	case a.HasSecondFactor():
		return nil, Errorf(ECONFLICT, "a second factor is already enrolled")
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.People.TOTPIssuer, AccountName: p.Email, Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, fmt.Errorf("cannot make a TOTP secret: %w", err)
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return nil, fmt.Errorf("cannot draw the QR code: %w", err)
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return nil, fmt.Errorf("cannot encode the QR code: %w", err)
	}
	sealed, err := Seal(ctx, s.Keyring, drivers.Secret(key.Secret()), totpAAD, p.UserID)
	if err != nil {
		return nil, keyringUnavailable(fmt.Errorf("cannot seal a TOTP secret: %w", err))
	}
	codes, hashes, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	a.TOTP, a.TOTPConfirmedAt, a.UpdatedAt = sealed, nil, s.Now()
	err = s.tx(ctx, func(q Queries) error {
		if err := q.PutUserAuth(ctx, a); err != nil {
			return err
		}
		return q.ReplaceRecoveryCodes(ctx, p.UserID, hashes)
	})
	if err != nil {
		return nil, err
	}
	return &TOTPEnrolment{
		Secret: key.Secret(), URL: key.URL(), QRCodePNG: base64.StdEncoding.EncodeToString(qr.Bytes()), RecoveryCodes: codes,
		Confirm: "POST /v1/users/me/totp/confirm {\"code\": \"123456\"} with a code from the app",
	}, nil
}

// ConfirmTOTP finishes the caller's enrolment with a first code; from then
// on sign-in needs a code. A wrong code is EINVALID naming code; no
// enrolment, or one already confirmed, is ECONFLICT.
func (s *Service) ConfirmTOTP(ctx context.Context, p *Principal, req ConfirmTOTPRequest) error {
	if err := userPrincipal(p); err != nil {
		return err
	}
	if err := checkText(req); err != nil {
		return err
	}
	a, err := s.Store.GetUserAuth(ctx, p.UserID)
	switch {
	case IsCode(err, ENOTFOUND) || (err == nil && len(a.TOTP.SecretCipher) == 0):
		return Errorf(ECONFLICT, "no enrolment to confirm: POST /v1/users/me/totp first")
	case err != nil:
		return err
	case a.HasSecondFactor():
		return Errorf(ECONFLICT, "a second factor is already enrolled")
	}
	if err := s.useTOTP(ctx, a, req.Code, s.Now()); err != nil {
		if IsCode(err, EUNAUTHORIZED) {
			return Invalid(FieldError{Field: "code", Message: "does not match; use a fresh code from the app"})
		}
		return err
	}
	now := s.Now()
	a.TOTPConfirmedAt, a.UpdatedAt = &now, now
	return s.tx(ctx, func(q Queries) error {
		// The step just used stays used: PutUserAuth keeps it for the same secret.
		if err := q.PutUserAuth(ctx, a); err != nil {
			return err
		}
		return s.audit(ctx, q, p, "", "", "user.totp_enrolled", p.UserID, nil)
	})
}

// useTOTP accepts code for a's secret at now, once: the matching time step
// must be later than the last one used, and is recorded as used. A wrong
// or replayed code is EUNAUTHORIZED.
func (s *Service) useTOTP(ctx context.Context, a *UserAuth, code drivers.Secret, now time.Time) error {
	secret, err := Unseal(ctx, s.Keyring, a.TOTP, totpAAD, a.UserID)
	if err != nil {
		return keyringUnavailable(fmt.Errorf("cannot open the TOTP secret of user %s: %w", a.UserID, err))
	}
	c := strings.TrimSpace(code.Reveal())
	step := now.Unix() / totpPeriod
	matched := int64(-1)
	for skew := int64(-totpSkew); skew <= totpSkew; skew++ {
		want, err := totp.GenerateCodeCustom(secret.Reveal(), time.Unix((step+skew)*totpPeriod, 0), totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return fmt.Errorf("cannot compute a TOTP code: %w", err)
		}
		if sameString(want, c) {
			matched = step + skew
		}
	}
	if matched < 0 || matched <= a.TOTPLastStep {
		return signInDenied()
	}
	err = s.Store.AdvanceTOTPStep(ctx, a.UserID, matched)
	if IsCode(err, ECONFLICT) {
		return signInDenied()
	}
	if err != nil {
		return storeUnavailable(err)
	}
	a.TOTPLastStep = matched
	return nil
}

// newRecoveryCodes returns fresh one-time codes ("xxxxx-xxxxx", 50 random
// bits each) and the hashes to store.
func newRecoveryCodes() (codes, hashes []string, err error) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	for range recoveryCodes {
		b := make([]byte, 7)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, err
		}
		raw := strings.ToLower(enc.EncodeToString(b))[:10]
		code := raw[:5] + "-" + raw[5:]
		codes = append(codes, code)
		hashes = append(hashes, HashToken(normalizeRecoveryCode(drivers.Secret(code))))
	}
	return codes, hashes, nil
}

// normalizeRecoveryCode is how a recovery code is hashed: lowercase,
// without spaces or dashes, so "ABCDE-FGHIJ" and "abcdefghij" are one code.
func normalizeRecoveryCode(code drivers.Secret) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(code.Reveal())))
}
