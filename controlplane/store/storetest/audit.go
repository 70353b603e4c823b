package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testAuditEvents(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	first := &controlplane.AuditEvent{ID: newID("evt_"), OrgID: a.ID, EnvironmentID: "env_123", Actor: "usr_1",
		Action: "credentials.rotate", Target: "env_123",
		Details:   map[string]any{"scope": "readonly", "grace_seconds": 900.0, "emergency": false, "scopes": []any{"a", "b"}},
		RequestID: "req_1", CreatedAt: at(0)}
	must(t, s.AppendAuditEvent(ctx, first))
	second := newEvent(t, s, a.ID)
	newEvent(t, s, b.ID)
	platform := &controlplane.AuditEvent{ID: newID("evt_"), Actor: "key_root", Action: "organization.create",
		Target: "org_x", CreatedAt: at(time.Second)}
	must(t, s.AppendAuditEvent(ctx, platform))

	events, next, err := s.ListAuditEvents(ctx, a.ID, controlplane.Page{})
	must(t, err)
	same(t, "events of a, newest first", []string{second.ID, first.ID}, ids(events, eventID))
	if next != "" {
		t.Errorf("single page has next cursor %q", next)
	}
	same(t, "event", first, events[1])
	events, _, err = s.ListAuditEvents(ctx, "", controlplane.Page{})
	must(t, err)
	same(t, "the platform's own events", []string{platform.ID}, ids(events, eventID))
	wantCode(t, s.AppendAuditEvent(ctx, first), controlplane.ECONFLICT)
}
