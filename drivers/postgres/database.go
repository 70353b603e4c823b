package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/drivers"
)

// createStrategy is how CREATE DATABASE copies its template; see
// adr/0004-postgres-create-database-strategy.md for the measurement.
const createStrategy = "TEMPLATE template0 STRATEGY WAL_LOG"

// clusterState is what the cluster holds of one database: whether the database
// exists and which of its roles do.
type clusterState struct {
	database bool
	roles    []string
}

func (s clusterState) ours(db string) bool { return slices.Contains(s.roles, ownerRole(db)) }

// querier is what the admin statements need: the pool, or the one pooled
// session that holds a database's lock.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readState(ctx context.Context, q querier, db string) (clusterState, error) {
	var s clusterState
	err := q.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
		       ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY($2))`,
		db, allRoles(db)).Scan(&s.database, &s.roles)
	if err != nil {
		return s, wrap("cannot read cluster state", err)
	}
	return s, nil
}

// CreateDatabase creates the database, its owner role and its six login roles
// (NOLOGIN until IssueCredential), and grants each scope its privileges. It is
// idempotent: each step tolerates the previous steps' work, so rerunning after
// a crash at any point finishes the job. A database of that name whose owner
// role is not ours returns ErrExists; an invalid name is an error.
func (d *Driver) CreateDatabase(ctx context.Context, req drivers.CreateDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	if err := checkName(req.Name); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	err := d.exclusive(ctx, req.Name, func(q querier) error {
		return d.create(ctx, q, req.Name, createEmpty(q, req.Name))
	})
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(req.Name, req.Region)}, nil
}

func (d *Driver) database(name, region string) drivers.Database {
	return drivers.Database{
		Name:     name,
		URL:      d.appURL(name, "").String(),
		Region:   region,
		Metadata: map[string]string{"owner_role": ownerRole(name)},
	}
}

// create runs the provisioning steps around makeDatabase, which issues the
// CREATE DATABASE statement (plain, or from a template for clones), and runs
// prepare (idempotent statements, each in its own transaction) inside the
// new database before the grants. The owner role is created before the
// database, so a database that exists without it was not made by envplane.
func (d *Driver) create(ctx context.Context, q querier, name string, makeDatabase func(context.Context) error, prepare ...string) error {
	s, err := readState(ctx, q, name)
	if err != nil {
		return err
	}
	if s.database && !s.ours(name) {
		return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrExists)
	}
	if err := ensureRoles(ctx, q, name, s.roles); err != nil {
		return err
	}
	if !s.database {
		if err := makeDatabase(ctx); err != nil {
			return wrap("cannot create database "+name, err)
		}
		d.crash("postgres.create.database_made")
	}
	return d.inDatabase(ctx, name, func(conn *pgx.Conn) error {
		for _, stmt := range prepare {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return wrap("cannot prepare "+name, err)
			}
		}
		if _, err := conn.Exec(ctx, grantStatements(name)); err != nil {
			return wrap("cannot grant privileges in "+name, err)
		}
		return nil
	})
}

// ensureRoles creates the roles that are missing and (re)applies the
// memberships, in one implicit transaction. Every login role starts NOLOGIN:
// a role only logs in once a credential is issued for it.
func ensureRoles(ctx context.Context, q querier, db string, existing []string) error {
	owner := ownerRole(db)
	admins := slotRoles(db, drivers.ScopeAdmin)
	var b strings.Builder
	for _, r := range allRoles(db) {
		if !slices.Contains(existing, r) {
			fmt.Fprintf(&b, "CREATE ROLE %s NOLOGIN;\n", ident(r))
		}
	}
	// The admin role that runs the driver needs membership to hand the
	// schema to the owner and to set default privileges for it (a superuser
	// does not, but the grant costs nothing and keeps one code path).
	fmt.Fprintf(&b, "GRANT %s TO CURRENT_USER;\n", idents(owner, admins[0], admins[1]))
	// Admin logins act as the owner, so objects their migrations create
	// belong to the owner whichever slot is active, and the owner's default
	// privileges below apply to them.
	fmt.Fprintf(&b, "GRANT %s TO %s;\n", ident(owner), idents(admins...))
	for _, a := range admins {
		fmt.Fprintf(&b, "ALTER ROLE %s SET role = %s;\n", ident(a), ident(owner))
	}
	if _, err := q.Exec(ctx, b.String()); err != nil {
		return wrap("cannot create roles of "+db, err)
	}
	return nil
}

// createEmpty returns the step that makes name an empty database, with the
// strategy ADR 0004 chose.
func createEmpty(q querier, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := q.Exec(ctx, "CREATE DATABASE "+ident(name)+" "+createStrategy)
		return err
	}
}

// grantStatements returns the statements, run inside the database, that
// close it to everyone else and give each scope its privileges. Each one is
// idempotent.
func grantStatements(db string) string { return grantStatementsOn(db, db) }

// grantStatementsOn is grantStatements for the database object datname,
// which holds db's contents under another name (a staged reset) and is
// opened by db's roles.
func grantStatementsOn(datname, db string) string {
	owner := ownerRole(db)
	admins := slotRoles(db, drivers.ScopeAdmin)
	rw := idents(slotRoles(db, drivers.ScopeReadWrite)...)
	ro := idents(slotRoles(db, drivers.ScopeReadOnly)...)
	creators := idents(owner, admins[0], admins[1])
	return strings.Join(append(append([]string{"REVOKE ALL ON DATABASE " + ident(datname) + " FROM PUBLIC"}, databaseGrantsOn(datname, db)...),
		"ALTER SCHEMA public OWNER TO "+ident(owner),
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO "+rw+", "+ro,
		// Objects that already exist (a clone's) ...
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+rw,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "+rw,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+ro,
		// ... and those migrations will create, as the owner or, after a
		// SET ROLE NONE, as an admin login itself.
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+creators+" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "+rw,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+creators+" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "+rw,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+creators+" IN SCHEMA public GRANT SELECT ON TABLES TO "+ro,
	), ";\n") + ";"
}

// databaseGrants returns the database-level privileges of db's login roles:
// CONNECT for all six, TEMPORARY for admin and readwrite. They live in the
// shared catalog, so they can be granted from any database.
func databaseGrants(db string) []string { return databaseGrantsOn(db, db) }

// databaseGrantsOn is databaseGrants on the database object datname for
// db's roles.
func databaseGrantsOn(datname, db string) []string {
	q := ident(datname)
	return []string{
		"GRANT CONNECT ON DATABASE " + q + " TO " + idents(allRoles(db)[:6]...),
		"GRANT TEMPORARY ON DATABASE " + q + " TO " + idents(slotRoles(db, drivers.ScopeAdmin)...) + ", " + idents(slotRoles(db, drivers.ScopeReadWrite)...),
	}
}

// inDatabase runs fn on a new admin connection to the named database.
func (d *Driver) inDatabase(ctx context.Context, db string, fn func(*pgx.Conn) error) error {
	cfg := d.pool.Config().ConnConfig.Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return wrap("cannot connect to "+db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// DropDatabase ends the database's sessions, drops it and drops its roles.
// Absent is success, and so is a half-dropped database (roles left after a
// crash). A database of that name not made by envplane returns ErrExists and
// is left alone.
func (d *Driver) DropDatabase(ctx context.Context, req drivers.DropDatabaseRequest) (drivers.DropDatabaseResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.DropDatabaseResponse{}, err
	}
	return drivers.DropDatabaseResponse{}, d.exclusive(ctx, name, func(q querier) error { return drop(ctx, q, name) })
}

func drop(ctx context.Context, q querier, name string) error {
	s, err := readState(ctx, q, name)
	if err != nil {
		return err
	}
	if s.database && !s.ours(name) {
		return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrExists)
	}
	if s.database {
		if err := dropDatabases(ctx, q, name); err != nil {
			return err
		}
	}
	// A reset left half-way keeps databases of the environment's roles
	// beside it; they go before the roles can.
	if err := dropDatabases(ctx, q, stagedName(name), retiredName(name)); err != nil {
		return err
	}
	if len(s.roles) == 0 {
		return nil
	}
	// Sessions the roles hold in other databases (PUBLIC may connect to
	// "postgres") end too, so nothing outlives the environment.
	if err := terminate(ctx, q, allRoles(name)...); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, "DROP ROLE IF EXISTS "+idents(allRoles(name)...)); err != nil {
		return wrap("cannot drop roles of "+name, err)
	}
	return nil
}

// dropDatabases drops each named database that exists, ending its sessions
// first (FORCE).
func dropDatabases(ctx context.Context, q querier, names ...string) error {
	for _, name := range names {
		if _, err := q.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			return wrap("cannot drop database "+name, err)
		}
	}
	return nil
}

// exclusive runs fn on one pooled session that holds a cluster-wide advisory
// lock on the database's name, so creates, drops and clones of one database
// (two replicas resuming the same operation) take turns instead of racing on
// the catalogs. fn runs its statements on that session: waiters hold pool
// connections too, so taking another one could exhaust the pool.
func (d *Driver) exclusive(ctx context.Context, name string, fn func(querier) error) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return wrap("cannot lock "+name, err)
	}
	defer conn.Release()
	const lock = "SELECT pg_advisory_lock(hashtextextended($1, 0))"
	key := "envplane:database:" + name
	if _, err := conn.Exec(ctx, lock, key); err != nil {
		return wrap("cannot lock "+name, err)
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		if _, err := conn.Exec(bg, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key); err != nil {
			// A lock that cannot be released goes with its session;
			// the pool discards a closed connection on release.
			conn.Conn().Close(bg)
		}
	}()
	return fn(conn)
}

// terminate ends every session whose login is one of roles and waits up to
// five seconds for each to be gone.
func terminate(ctx context.Context, q querier, roles ...string) error {
	_, err := q.Exec(ctx, `
		SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
		WHERE usename = ANY($1) AND pid <> pg_backend_pid()`, roles)
	if err != nil {
		return wrap("cannot terminate sessions", err)
	}
	return nil
}
