package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/envplane/envplane/controlplane"
)

// routeColumns are a route's columns in the order scanRoute reads them: each
// table's as its scan function reads them, the user's roles, and whether the
// environment has a database and the scope an active credential.
func routeColumns() string {
	return strings.Join([]string{
		qualify("o", orgColumns), qualify("e", envColumns), "om.role, em.role, d.id, c.id",
		qualify("d", dbColumns), qualify("c", credColumns),
	}, ", ")
}

// routeJoins add to the organization o and environment e the user's roles,
// the database and the newest active credential of the scope, found on the
// (database_id, status) index among the few active ones.
const routeJoins = `
	LEFT JOIN org_members om ON om.org_id = o.id AND om.user_id = $1
	LEFT JOIN environment_members em ON em.environment_id = e.id AND em.user_id = $1
	LEFT JOIN environment_databases d ON d.environment_id = e.id
	LEFT JOIN LATERAL (
		SELECT ` + credColumns + ` FROM database_credentials
		WHERE database_id = d.id AND status = 'active' AND scope = $2
		ORDER BY issued_at DESC, id DESC LIMIT 1) c ON true`

// The two texts of ResolveRoute: they take the user id, the scope and the
// environment ref, and routeInOrg the organization ref. An id wins over a
// slug, as in GetOrganization and GetEnvironment. The slug's branch repeats
// the organization, so the planner looks up the id and the (org_id, slug)
// in their indexes instead of filtering all of the organization's
// environments.
func routeInOrg() string {
	return `SELECT ` + routeColumns() + `
	FROM organizations o
	JOIN environments e ON e.org_id = o.id AND (e.id = $3 OR e.org_id = o.id AND e.slug = $3)
		AND e.deleted_at IS NULL` + routeJoins + `
	WHERE o.id = $4 OR o.slug = $4
	ORDER BY o.id = $4 DESC, e.id = $3 DESC LIMIT 1`
}

func routeByEnvID() string {
	return `SELECT ` + routeColumns() + `
	FROM environments e
	JOIN organizations o ON o.id = e.org_id` + routeJoins + `
	WHERE e.id = $3 AND e.deleted_at IS NULL`
}

// ResolveRoute reads, in one statement, the organization, the live
// environment, its database, the newest active credential of rq.Scope (as
// ListCredentials orders them) and rq.UserID's roles. ENOTFOUND ("not
// found", whichever is absent) if the organization or the live environment
// is; with rq.OrgRef empty, rq.EnvRef is an environment id in any
// organization.
func (q *queries) ResolveRoute(ctx context.Context, rq controlplane.RouteQuery) (*controlplane.Route, error) {
	query, args := routeInOrg(), []any{nullString(rq.UserID), string(rq.Scope), rq.EnvRef, rq.OrgRef}
	if rq.OrgRef == "" {
		query, args = routeByEnvID(), args[:3]
	}
	rows, err := q.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve route: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("cannot resolve route: %w", err)
		}
		return nil, controlplane.Errorf(controlplane.ENOTFOUND, "not found")
	}
	r, err := scanRoute(rows)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve route: %w", err)
	}
	return r, nil
}

// scanRoute reads the current row of rows, which has routeColumns.
func scanRoute(rows pgx.Rows) (*controlplane.Route, error) {
	w := &window{m: rows.Conn().TypeMap(), fields: rows.FieldDescriptions(), values: rows.RawValues()}
	var r controlplane.Route
	var err error
	if r.Org, err = scanOrg(w); err != nil {
		return nil, err
	}
	if r.Environment, err = scanEnv(w); err != nil {
		return nil, err
	}
	var orgRole, envRole, dbID, credID *string
	if err := w.Scan(&orgRole, &envRole, &dbID, &credID); err != nil {
		return nil, err
	}
	r.OrgRole, r.EnvRole = controlplane.OrgRole(deref(orgRole)), controlplane.EnvRole(deref(envRole))
	// A LEFT JOIN that found nothing leaves NULLs, which the scan functions
	// refuse; the credential's columns follow the database's.
	if dbID != nil {
		if r.Database, err = scanDatabase(w); err != nil {
			return nil, err
		}
	}
	if credID != nil {
		if r.Credential, err = scanCredential(w); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// window lets the scan function of each table of a join read its own
// columns of the row: each Scan decodes the next len(dest) columns.
type window struct {
	m      *pgtype.Map
	fields []pgconn.FieldDescription
	values [][]byte
}

// Scan decodes the next len(dest) columns of the row into dest.
func (w *window) Scan(dest ...any) error {
	if len(dest) > len(w.values) {
		return fmt.Errorf("scan of %d columns with %d left", len(dest), len(w.values))
	}
	for i, d := range dest {
		f := w.fields[i]
		if err := w.m.Scan(f.DataTypeOID, f.Format, w.values[i], d); err != nil {
			return fmt.Errorf("cannot scan column %s: %w", f.Name, err)
		}
	}
	w.fields, w.values = w.fields[len(dest):], w.values[len(dest):]
	return nil
}

// qualify prefixes each of the comma-separated columns with alias.
func qualify(alias, columns string) string {
	cs := strings.Split(columns, ",")
	for i, c := range cs {
		cs[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cs, ", ")
}
