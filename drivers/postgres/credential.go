package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/envplane/envplane/drivers"
)

// defaultSCRAMIterations is PostgreSQL's default scram_iterations.
const defaultSCRAMIterations = 4096

// IssueCredential gives the slot's role a new random password, LOGIN and
// VALID UNTIL req.ExpiresAt ('infinity' when zero), replacing its previous
// password; the other slot is untouched, so it keeps working through a
// rotation. The server receives only a SCRAM-SHA-256 verifier, never the
// password. It returns ErrNotFound if the database or its roles do not exist.
// Repeating it issues a fresh secret, which is what a retry needs.
func (d *Driver) IssueCredential(ctx context.Context, req drivers.IssueCredentialRequest) (drivers.IssueCredentialResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	if err := checkScopeSlot(req.Scope, req.Slot); err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	var exists bool
	if err := d.pool.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return drivers.IssueCredentialResponse{}, wrap("cannot look up database", err)
	}
	if !exists {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("postgres: database %s: %w", name, drivers.ErrNotFound)
	}
	password, verifier, err := newPassword(d.iterations)
	if err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	role := loginRole(name, req.Scope, req.Slot)
	until := "infinity"
	if !req.ExpiresAt.IsZero() {
		until = req.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	// Utility statements take no parameters. Both literals are safe to
	// inline: the verifier is base64 and punctuation we produced, the time
	// is formatted here; neither can hold a quote.
	stmt := fmt.Sprintf("ALTER ROLE %s WITH LOGIN PASSWORD '%s' VALID UNTIL '%s'", ident(role), verifier, until)
	if _, err := d.pool.Exec(ctx, stmt); err != nil {
		return drivers.IssueCredentialResponse{}, secretError("cannot set the password of "+role, err)
	}
	return drivers.IssueCredentialResponse{Credential: drivers.Credential{
		Scope:     req.Scope,
		Slot:      req.Slot,
		Username:  role,
		Secret:    drivers.Secret(password),
		ExpiresAt: req.ExpiresAt,
	}}, nil
}

// RevokeCredential sets the slot's role NOLOGIN with no password, then
// terminates its sessions and waits for them to end. A role or database that
// does not exist is success. A Username that is not the slot's role is an
// error, so a request cannot reach another database's roles.
func (d *Driver) RevokeCredential(ctx context.Context, req drivers.RevokeCredentialRequest) (drivers.RevokeCredentialResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	if err := checkScopeSlot(req.Scope, req.Slot); err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	role := loginRole(name, req.Scope, req.Slot)
	if req.Username != "" && req.Username != role {
		return drivers.RevokeCredentialResponse{}, fmt.Errorf("postgres: user %q is not the %s/%s role of %s", req.Username, req.Scope, req.Slot, name)
	}
	// NOLOGIN first: from here no new session can start, so the
	// termination below cannot miss one.
	_, err := d.pool.Exec(ctx, "ALTER ROLE "+ident(role)+" WITH NOLOGIN PASSWORD NULL")
	if err != nil {
		if sentinel(err) == drivers.ErrNotFound {
			return drivers.RevokeCredentialResponse{}, nil
		}
		return drivers.RevokeCredentialResponse{}, wrap("cannot revoke "+role, err)
	}
	if err := terminate(ctx, d.pool, role); err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	return drivers.RevokeCredentialResponse{}, nil
}

// newPassword returns a password made of 32 random bytes (base64url) and its
// SCRAM-SHA-256 verifier.
func newPassword(iterations int) (password, verifier string, err error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("postgres: cannot read random bytes: %w", err)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", "", fmt.Errorf("postgres: cannot read random bytes: %w", err)
	}
	password = base64.RawURLEncoding.EncodeToString(raw)
	verifier, err = scramVerifier(password, salt, iterations)
	if err != nil {
		return "", "", err
	}
	return password, verifier, nil
}

// scramVerifier computes what PostgreSQL stores in pg_authid.rolpassword for
// a SCRAM-SHA-256 password (RFC 5802, RFC 7677):
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>. The password is
// ASCII, so SASLprep leaves it unchanged.
func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("postgres: cannot derive key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
