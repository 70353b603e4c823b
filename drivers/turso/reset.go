package turso

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso/platform"
)

var _ drivers.Resetter = (*Driver)(nil)

// A Turso database's hostname is derived from its name, and applications
// hold that hostname in their DSN, so a reset cannot swap one database for
// another. It is staged as another database of the group (name-next, made by
// the Platform API: seeded from the source for a copy, empty otherwise),
// adopted there by the caller over a token of its own, and swapped in over
// libSQL with the database's admin token: one Hrana batch that drops every
// object of the database and recreates the staged ones with their rows,
// between BEGIN and COMMIT, so that sessions see the old contents or the
// new (adr/0020). Tokens belong to the database, not its contents: every
// credential keeps working.

// stagedTTL bounds the life of the token the driver mints for a staged
// database: long enough to adopt it (run migrations), then useless.
const stagedTTL = time.Hour

// stagedName is the Turso name a reset of name is built under; it is
// longer than any generated name's, so it never names an environment's.
func stagedName(name string) (string, error) {
	t, err := tursoName(name)
	if err != nil {
		return "", err
	}
	return t + "-next", nil
}

// ours returns the named database when it exists in envplane's group;
// found is false when it does not exist, and a database of another group
// is ErrExists.
func (d *Driver) ours(ctx context.Context, name string) (db platform.Database, found bool, err error) {
	db, err = d.client.GetDatabase(ctx, name)
	if errors.Is(err, drivers.ErrNotFound) {
		return db, false, nil
	}
	if err != nil {
		return db, false, fmt.Errorf("turso: %w", err)
	}
	if db.Group != d.cfg.Group {
		return db, false, fmt.Errorf("turso: database %s is in group %q, not envplane's %q: %w", name, db.Group, d.cfg.Group, drivers.ErrExists)
	}
	return db, true, nil
}

// StageReset creates name-next in the group, seeded from req.Source or
// empty, after deleting an earlier one. ErrNotFound when the database or
// the source is absent.
func (d *Driver) StageReset(ctx context.Context, req drivers.ResetRequest) error {
	live, err := tursoName(req.Database.Name)
	if err != nil {
		return err
	}
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	if _, found, err := d.ours(ctx, live); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("turso: database %s: %w", live, drivers.ErrNotFound)
	}
	in := platform.CreateDatabaseInput{Name: staged, Group: d.cfg.Group}
	if req.Source != nil {
		source, err := tursoName(req.Source.Name)
		if err != nil {
			return err
		}
		if _, found, err := d.ours(ctx, source); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("turso: reset source %s: %w", source, drivers.ErrNotFound)
		}
		in.Seed = &platform.Seed{Type: platform.SeedDatabase, Name: source}
	}
	if err := d.deleteStaged(ctx, staged); err != nil {
		return err
	}
	if _, err := d.client.CreateDatabase(ctx, in); err != nil {
		return fmt.Errorf("turso: %w", err)
	}
	return nil
}

// deleteStaged deletes name-next when it exists. Absent is success.
func (d *Driver) deleteStaged(ctx context.Context, staged string) error {
	_, found, err := d.ours(ctx, staged)
	if err != nil || !found {
		return err
	}
	if err := d.client.DeleteDatabase(ctx, staged); err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return fmt.Errorf("turso: %w", err)
	}
	return nil
}

// OpenStaged checks req.Credential against the database, then opens
// name-next with a token minted for it (read-only for the readonly scope),
// which expires within an hour. ErrNotFound when nothing is staged;
// ErrDenied when the database refuses the credential.
func (d *Driver) OpenStaged(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	base, err := d.databaseURL(req.Database)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if req.Credential.Secret == "" {
		return drivers.OpenResponse{}, fmt.Errorf("turso: empty token: %w", drivers.ErrDenied)
	}
	if err := d.check(ctx, base, req.Credential.Secret); err != nil {
		return drivers.OpenResponse{}, err
	}
	authz := platform.FullAccess
	if req.Credential.Scope == drivers.ScopeReadOnly {
		authz = platform.ReadOnly
	}
	return d.openStaged(ctx, req.Database.Name, authz)
}

func (d *Driver) openStaged(ctx context.Context, name string, authz platform.Authorization) (drivers.OpenResponse, error) {
	staged, err := stagedName(name)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	db, found, err := d.ours(ctx, staged)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if !found || db.Hostname == "" {
		return drivers.OpenResponse{}, fmt.Errorf("turso: staged reset %s: %w", staged, drivers.ErrNotFound)
	}
	pool, err := d.connectMinted(ctx, db, authz)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	return drivers.OpenResponse{DB: pool, Dialect: drivers.DialectLibSQL}, nil
}

// connectMinted opens db (a database of the group) over libSQL with a
// token the driver mints for it, which expires within an hour.
func (d *Driver) connectMinted(ctx context.Context, db platform.Database, authz platform.Authorization) (*sql.DB, error) {
	token, err := d.client.CreateDatabaseToken(ctx, db.Name, platform.TokenOptions{Authorization: authz, Expiration: expiration(stagedTTL)})
	if err != nil {
		return nil, fmt.Errorf("turso: %w", err)
	}
	base := d.cfg.DatabaseURL(db.Hostname)
	pool, err := libsqlPool(base, token)
	if err != nil {
		return nil, err
	}
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("turso: cannot open %s: %w", db.Name, drivers.ErrUnavailable)
	}
	return pool, nil
}

// SwapReset replaces the database's objects and rows with name-next's in
// one Hrana batch over the admin credential (req.Admin), then deletes
// name-next. Nothing staged is success.
func (d *Driver) SwapReset(ctx context.Context, req drivers.ResetRequest) error {
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	if _, found, err := d.ours(ctx, staged); err != nil || !found {
		return err
	}
	from, err := d.openStaged(ctx, req.Database.Name, platform.ReadOnly)
	if err != nil {
		return err
	}
	defer from.DB.Close()
	want, err := readObjects(ctx, from.DB)
	if err != nil {
		return fmt.Errorf("turso: staged reset %s: %w", staged, err)
	}
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	if _, err := writeObjects(ctx, &b, from.DB, want); err != nil {
		return fmt.Errorf("turso: staged reset %s: %w", staged, err)
	}
	b.WriteString("COMMIT;\n")

	to, err := d.Open(ctx, drivers.OpenRequest{Database: req.Database, Credential: req.Admin})
	if err != nil {
		return err
	}
	defer to.DB.Close()
	have, err := readObjects(ctx, to.DB)
	if err != nil {
		return fmt.Errorf("turso: database %s: %w", req.Database.Name, err)
	}
	var drops strings.Builder
	drops.WriteString("BEGIN;\n")
	// Views and triggers first; a table's indexes go with it.
	for _, kind := range []string{"view", "trigger", "table"} {
		for _, o := range have {
			if o.kind == kind {
				fmt.Fprintf(&drops, "DROP %s IF EXISTS %s;\n", strings.ToUpper(kind), quoteIdent(o.name))
			}
		}
	}
	batch := drops.String() + strings.TrimPrefix(b.String(), "BEGIN;\n")
	if err := runBatch(ctx, to.DB, batch); err != nil {
		return fmt.Errorf("turso: cannot replace the contents of %s: %w", req.Database.Name, err)
	}
	return d.deleteStaged(ctx, staged)
}

// DiscardReset deletes name-next. Turso keeps no old contents beside the
// database (the swap replaced them in place). Absent is success.
func (d *Driver) DiscardReset(ctx context.Context, req drivers.ResetRequest) error {
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	return d.deleteStaged(ctx, staged)
}
