package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const auditColumns = `id, org_id, environment_id, actor, action, target, details, request_id, created_at`

func scanAuditEvent(s scanner) (*controlplane.AuditEvent, error) {
	var e controlplane.AuditEvent
	var orgID, envID *string
	var details []byte
	if err := s.Scan(&e.ID, &orgID, &envID, &e.Actor, &e.Action, &e.Target, &details, &e.RequestID, tm(&e.CreatedAt)); err != nil {
		return nil, err
	}
	d, err := decodeJSON[map[string]any](details)
	if err != nil {
		return nil, err
	}
	e.OrgID, e.EnvironmentID, e.Details = deref(orgID), deref(envID), d
	return &e, nil
}

// AppendAuditEvent inserts e, truncating its time to microseconds. The schema
// refuses to update, delete or truncate audit events, and keeps them when
// their organization is deleted. ECONFLICT if the id exists.
func (q *queries) AppendAuditEvent(ctx context.Context, e *controlplane.AuditEvent) error {
	e.CreatedAt = utc(e.CreatedAt)
	details, err := encodeJSON(e.Details)
	if err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO audit_events (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.ID, nullString(e.OrgID), nullString(e.EnvironmentID), e.Actor, e.Action, e.Target, details, e.RequestID, e.CreatedAt)
	if err != nil {
		return q.writeErr(err, "append audit event", "audit event exists", "audit event target not found")
	}
	return nil
}

// ListAuditEvents lists the organization's events, or with orgID empty the
// platform's own (no organization), newest (highest id) first.
func (q *queries) ListAuditEvents(ctx context.Context, orgID string, p controlplane.Page) ([]*controlplane.AuditEvent, string, error) {
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "org_id IS NULL"
	if orgID != "" {
		where = "org_id = " + a.add(orgID)
	}
	if p.Cursor != "" {
		where += " AND id < " + a.add(p.Cursor)
	}
	events, err := queryAll(ctx, q.db, `SELECT `+auditColumns+` FROM audit_events WHERE `+where+` ORDER BY id DESC LIMIT `+a.add(n+1),
		a, scanAuditEvent)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list audit events: %w", err)
	}
	events, next := cutPage(events, n, func(e *controlplane.AuditEvent) string { return e.ID })
	return events, next, nil
}
