package sqlite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/envplane/envplane/drivers"
)

// tokenBytes is the entropy of a credential token. At 256 random bits a plain
// SHA-256 is enough to store it: there is nothing to brute-force.
const tokenBytes = 32

// registrySchema is the credential registry kept beside each database. The
// name row ties the registry to its database, so a registry copied next to
// another database does not open it.
const registrySchema = `
CREATE TABLE IF NOT EXISTS registry (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS suspension (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	suspended_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
	scope        TEXT NOT NULL,
	slot         TEXT NOT NULL,
	token_sha256 BLOB NOT NULL,
	issued_at    INTEGER NOT NULL,
	expires_at   INTEGER,
	PRIMARY KEY (scope, slot)
);`

// IssueCredential generates a token for the scope in the slot and records its
// hash and expiry in the database's registry, replacing the slot's previous
// token, which stops working. It returns ErrNotFound when the database does
// not exist and ErrUnsupported for an invalid name, scope or slot. Repeating
// it issues a new token.
func (d *Driver) IssueCredential(ctx context.Context, req drivers.IssueCredentialRequest) (drivers.IssueCredentialResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	if err := checkScopeSlot(req.Scope, req.Slot); err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	if !exists(p.db) || !exists(p.registry) {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("cannot generate token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	var expires sql.NullInt64
	if !req.ExpiresAt.IsZero() {
		expires = sql.NullInt64{Int64: req.ExpiresAt.UnixNano(), Valid: true}
	}
	err = withRegistry(p, func(reg *sql.DB) error {
		_, err := reg.ExecContext(ctx, `
			INSERT INTO credentials (scope, slot, token_sha256, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (scope, slot) DO UPDATE SET
				token_sha256 = excluded.token_sha256, issued_at = excluded.issued_at, expires_at = excluded.expires_at`,
			string(req.Scope), string(req.Slot), sum[:], d.now().UnixNano(), expires)
		return err
	})
	if err != nil {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("cannot record credential of %s: %w", p.name, err)
	}
	return drivers.IssueCredentialResponse{Credential: drivers.Credential{
		Scope:     req.Scope,
		Slot:      req.Slot,
		Username:  username(req.Scope, req.Slot),
		Secret:    drivers.Secret(token),
		ExpiresAt: req.ExpiresAt,
	}}, nil
}

// RevokeCredential deletes the slot's token from the registry, so Open refuses
// it from now on. Pools opened before keep working: a file has no sessions to
// end. Absent (database or credential) is success; an invalid name, scope or
// slot is ErrUnsupported. Idempotent.
func (d *Driver) RevokeCredential(ctx context.Context, req drivers.RevokeCredentialRequest) (drivers.RevokeCredentialResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	if err := checkScopeSlot(req.Scope, req.Slot); err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	if !exists(p.registry) {
		return drivers.RevokeCredentialResponse{}, nil
	}
	err = withRegistry(p, func(reg *sql.DB) error {
		_, err := reg.ExecContext(ctx, `DELETE FROM credentials WHERE scope = ? AND slot = ?`, string(req.Scope), string(req.Slot))
		return err
	})
	if err != nil {
		return drivers.RevokeCredentialResponse{}, fmt.Errorf("cannot revoke credential of %s: %w", p.name, err)
	}
	return drivers.RevokeCredentialResponse{}, nil
}

// verify returns nil when c's token is the one registered for its scope and
// slot in p's registry and has not expired; ErrDenied otherwise, ErrNotFound
// when the database has no registry.
func (d *Driver) verify(ctx context.Context, p paths, c drivers.Credential) error {
	if !exists(p.registry) {
		return fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	var (
		sum       []byte
		expires   sql.NullInt64
		suspended bool
	)
	err := withRegistry(p, func(reg *sql.DB) error {
		err := reg.QueryRowContext(ctx, `
			SELECT c.token_sha256, c.expires_at FROM credentials c JOIN registry r ON r.id = 1
			WHERE r.name = ? AND c.scope = ? AND c.slot = ?`,
			p.name, string(c.Scope), string(c.Slot)).Scan(&sum, &expires)
		if err != nil {
			return err
		}
		suspended, err = isSuspended(ctx, reg)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("database %s, %s/%s: no such credential: %w", p.name, c.Scope, c.Slot, drivers.ErrDenied)
	}
	if err != nil {
		return fmt.Errorf("cannot read credentials of %s: %w", p.name, err)
	}
	given := sha256.Sum256([]byte(c.Secret.Reveal()))
	if subtle.ConstantTimeCompare(given[:], sum) != 1 {
		return fmt.Errorf("database %s, %s/%s: wrong secret: %w", p.name, c.Scope, c.Slot, drivers.ErrDenied)
	}
	if suspended {
		return fmt.Errorf("database %s is suspended: %w", p.name, drivers.ErrDenied)
	}
	if expires.Valid && !d.now().Before(time.Unix(0, expires.Int64)) {
		return fmt.Errorf("database %s, %s/%s: credential expired: %w", p.name, c.Scope, c.Slot, drivers.ErrDenied)
	}
	return nil
}

// registryState is what a create finds at a database's registry path.
type registryState int

const (
	registryAbsent  registryState = iota
	registryHalf                  // exists without its tables or its name row: a crash while it was made
	registryOurs                  // names this database
	registryForeign               // names another database
)

// registry reports the state of p's registry. A registry is only ever made
// by this driver under that name, so one that exists but lacks its tables or
// its name row was cut short while being made (by an earlier version, which
// created the file before its tables) and is ours to finish.
func (d *Driver) registry(ctx context.Context, p paths) (registryState, error) {
	if !exists(p.registry) {
		return registryAbsent, nil
	}
	state := registryHalf
	err := withRegistry(p, func(reg *sql.DB) error {
		var tables int
		if err := reg.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('registry', 'credentials')`).Scan(&tables); err != nil || tables < 2 {
			return err
		}
		var name string
		err := reg.QueryRowContext(ctx, `SELECT name FROM registry WHERE id = 1`).Scan(&name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		case name == p.name:
			state = registryOurs
		default:
			state = registryForeign
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot read credential registry of %s: %w", p.name, err)
	}
	return state, nil
}

// withRegistry opens p's existing registry for the duration of fn. mode=rw
// keeps a registry removed by a drop from coming back empty.
func withRegistry(p paths, fn func(reg *sql.DB) error) error {
	reg, err := sql.Open("sqlite", registryDSN(p))
	if err != nil {
		return err
	}
	defer reg.Close()
	return fn(reg)
}

// initRegistry makes p's registry (mode 0600) marked as p's, atomically: it
// is built complete under a temporary name and renamed into place, so a
// crash leaves either no registry or a whole one. It replaces a half-made
// registry, whose stale journals go first so SQLite cannot replay them into
// the new file.
func (d *Driver) initRegistry(ctx context.Context, p paths) error {
	tmp := p.registry + ".tmp"
	for _, f := range sqliteFiles(tmp) {
		if err := removeIfExists(f); err != nil {
			return fmt.Errorf("cannot clear temporary registry of %s: %w", p.name, err)
		}
	}
	if err := createEmpty(tmp); err != nil {
		return fmt.Errorf("cannot create credential registry of %s: %w", p.name, err)
	}
	if err := fillRegistry(ctx, tmp, p.name); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot initialize credential registry of %s: %w", p.name, err)
	}
	d.crash("sqlite.create.registry_built")
	for _, f := range sqliteFiles(p.registry)[1:] {
		if err := removeIfExists(f); err != nil {
			return fmt.Errorf("cannot clear journals of the registry of %s: %w", p.name, err)
		}
	}
	if err := os.Rename(tmp, p.registry); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot move credential registry of %s into place: %w", p.name, err)
	}
	return nil
}

// fillRegistry writes the registry's tables and name row into the empty
// SQLite file at path, in one transaction.
func fillRegistry(ctx context.Context, path, name string) error {
	reg, err := sql.Open("sqlite", fmt.Sprintf("%s?mode=rw&_txlock=immediate", fileURI(path)))
	if err != nil {
		return err
	}
	defer reg.Close()
	tx, err := reg.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, registrySchema); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO registry (id, name) VALUES (1, ?)`, name); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return reg.Close()
}

func registryDSN(p paths) string {
	return fmt.Sprintf("%s?mode=rw&_pragma=busy_timeout(%d)&_txlock=immediate", fileURI(p.registry), busyTimeout)
}

// username names a credential for display: a SQLite file has no users.
func username(scope drivers.Scope, slot drivers.Slot) string {
	return string(scope) + "_" + string(slot)
}
