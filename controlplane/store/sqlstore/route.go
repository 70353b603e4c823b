package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

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
// the database and, by the dialect's join, the newest active credential of
// the scope ($2) as c.
func (q *queries) routeJoins() string {
	return `
	LEFT JOIN org_members om ON om.org_id = o.id AND om.user_id = $1
	LEFT JOIN environment_members em ON em.environment_id = e.id AND em.user_id = $1
	LEFT JOIN environment_databases d ON d.environment_id = e.id` + q.d.routeCredentialJoin()
}

// The two texts of ResolveRoute: they take the user id, the scope and the
// environment ref, and routeInOrg the organization ref. An id wins over a
// slug, as in GetOrganization and GetEnvironment. The ORs are written as
// conjunctions that each match an index, so the planner looks both up
// instead of scanning the organization's environments.
func (q *queries) routeInOrg() string {
	return `SELECT ` + routeColumns() + `
	FROM organizations o
	JOIN environments e ON (e.id = $3 AND e.org_id = o.id OR e.org_id = o.id AND e.slug = $3)
		AND e.deleted_at IS NULL` + q.routeJoins() + `
	WHERE o.id = $4 OR o.slug = $4
	ORDER BY o.id = $4 DESC, e.id = $3 DESC LIMIT 1`
}

func (q *queries) routeByEnvID() string {
	return `SELECT ` + routeColumns() + `
	FROM environments e
	JOIN organizations o ON o.id = e.org_id` + q.routeJoins() + `
	WHERE e.id = $3 AND e.deleted_at IS NULL`
}

// ResolveRoute reads, in one statement, the organization, the
// live environment, its database, the newest active credential of q.Scope
// (as ListCredentials orders them) and q.UserID's roles. ENOTFOUND ("not
// found", whichever is absent) if the organization or the live environment
// is; with q.OrgRef empty, q.EnvRef is an environment id in any
// organization.
func (q *queries) ResolveRoute(ctx context.Context, rq controlplane.RouteQuery) (*controlplane.Route, error) {
	query, args := q.routeInOrg(), []any{nullString(rq.UserID), string(rq.Scope), rq.EnvRef, rq.OrgRef}
	if rq.OrgRef == "" {
		query, args = q.routeByEnvID(), args[:3]
	}
	rows, err := q.db.QueryContext(ctx, query, args...)
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
func scanRoute(rows Rows) (*controlplane.Route, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	w := &window{rows: rows, dest: make([]any, len(cols))}
	var r controlplane.Route
	if r.Org, err = scanOrg(w); err != nil {
		return nil, err
	}
	if r.Environment, err = scanEnv(w); err != nil {
		return nil, err
	}
	var orgRole, envRole, dbID, credID sql.NullString
	if err := w.Scan(&orgRole, &envRole, &dbID, &credID); err != nil {
		return nil, err
	}
	r.OrgRole, r.EnvRole = controlplane.OrgRole(orgRole.String), controlplane.EnvRole(envRole.String)
	// A LEFT JOIN that found nothing leaves NULLs, which the scan functions
	// refuse; the credential's columns follow the database's.
	if dbID.Valid {
		if r.Database, err = scanDatabase(w); err != nil {
			return nil, err
		}
	}
	if credID.Valid {
		if r.Credential, err = scanCredential(w); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// window lets the scan function of each table of a join read its own
// columns of the row: each Scan fills the next len(dest) columns and
// discards the others (database/sql scans the current row as often as it is
// asked, every column each time).
type window struct {
	rows Rows
	dest []any
	next int
}

// Scan scans the next len(dest) columns of the row into dest.
func (w *window) Scan(dest ...any) error {
	if w.next+len(dest) > len(w.dest) {
		return fmt.Errorf("scan of %d columns from column %d of %d", len(dest), w.next, len(w.dest))
	}
	var discard any
	for i := range w.dest {
		w.dest[i] = &discard
	}
	copy(w.dest[w.next:], dest)
	w.next += len(dest)
	return w.rows.Scan(w.dest...)
}

// qualify prefixes each of the comma-separated columns with alias.
func qualify(alias, columns string) string {
	cs := strings.Split(columns, ",")
	for i, c := range cs {
		cs[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cs, ", ")
}
