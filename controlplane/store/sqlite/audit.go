package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const auditColumns = `id, org_id, environment_id, actor, action, target, details, request_id, created_at`

func scanAuditEvent(s scanner) (*controlplane.AuditEvent, error) {
	var e controlplane.AuditEvent
	var orgID, envID, details sql.NullString
	var created int64
	if err := s.Scan(&e.ID, &orgID, &envID, &e.Actor, &e.Action, &e.Target, &details, &e.RequestID, &created); err != nil {
		return nil, err
	}
	d, err := decodeJSON[map[string]any](details)
	if err != nil {
		return nil, err
	}
	e.OrgID, e.EnvironmentID, e.Details, e.CreatedAt = orgID.String, envID.String, d, fromMicros(created)
	return &e, nil
}

// AppendAuditEvent inserts e, truncating its time to microseconds. The schema
// refuses to update or delete audit events, and keeps them when their
// organization is deleted. ECONFLICT if the id exists.
func (q *queries) AppendAuditEvent(ctx context.Context, e *controlplane.AuditEvent) error {
	e.CreatedAt = utc(e.CreatedAt)
	details, err := encodeJSON(e.Details)
	if err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO audit_events (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, nullString(e.OrgID), nullString(e.EnvironmentID), e.Actor, e.Action, e.Target, details, e.RequestID,
		micros(e.CreatedAt))
	if err != nil {
		return writeErr(err, "append audit event", "audit event exists", "audit event target not found")
	}
	return nil
}

// ListAuditEvents lists the organization's events, or with orgID empty the
// platform's own (no organization), newest (highest id) first.
func (q *queries) ListAuditEvents(ctx context.Context, orgID string, p controlplane.Page) ([]*controlplane.AuditEvent, string, error) {
	n := controlplane.PageLimit(p.Limit)
	where, args := "org_id = ?", []any{orgID}
	if orgID == "" {
		where, args = "org_id IS NULL", nil
	}
	if p.Cursor != "" {
		where += " AND id < ?"
		args = append(args, p.Cursor)
	}
	args = append(args, n+1)
	events, err := queryAll(ctx, q.db, `SELECT `+auditColumns+` FROM audit_events WHERE `+where+` ORDER BY id DESC LIMIT ?`,
		args, scanAuditEvent)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list audit events: %w", err)
	}
	events, next := cutPage(events, n, func(e *controlplane.AuditEvent) string { return e.ID })
	return events, next, nil
}
