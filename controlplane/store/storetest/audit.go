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
	wantCode(t, s.AppendAuditEvent(ctx, first), controlplane.ECONFLICT)
}

func testIdempotencyRecords(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	r := &controlplane.IdempotencyRecord{Owner: "key_1", Key: "k-1", RequestHash: "sha256:1", CreatedAt: at(0)}
	must(t, s.CreateIdempotencyRecord(ctx, r))
	got, err := s.GetIdempotencyRecord(ctx, "key_1", "k-1")
	must(t, err)
	same(t, "record in flight", r, got)

	wantCode(t, s.CreateIdempotencyRecord(ctx, &controlplane.IdempotencyRecord{Owner: "key_1", Key: "k-1",
		RequestHash: "sha256:2", CreatedAt: at(0)}), controlplane.ECONFLICT)
	// Keys are scoped per owner.
	must(t, s.CreateIdempotencyRecord(ctx, &controlplane.IdempotencyRecord{Owner: "key_2", Key: "k-1",
		RequestHash: "sha256:2", CreatedAt: at(0)}))
	_, err = s.GetIdempotencyRecord(ctx, "key_3", "k-1")
	wantCode(t, err, controlplane.ENOTFOUND)

	must(t, s.CompleteIdempotencyRecord(ctx, "key_1", "k-1", 201, []byte(`{"id":"env_1"}`)))
	got, err = s.GetIdempotencyRecord(ctx, "key_1", "k-1")
	must(t, err)
	r.StatusCode, r.Response = 201, []byte(`{"id":"env_1"}`)
	same(t, "completed record", r, got)
	other, err := s.GetIdempotencyRecord(ctx, "key_2", "k-1")
	must(t, err)
	if other.StatusCode != 0 || other.Response != nil {
		t.Errorf("completing key_1's record changed key_2's: %+v", other)
	}
	wantCode(t, s.CompleteIdempotencyRecord(ctx, "key_1", "k-none", 200, nil), controlplane.ENOTFOUND)

	must(t, s.DeleteIdempotencyRecord(ctx, "key_1", "k-1"))
	_, err = s.GetIdempotencyRecord(ctx, "key_1", "k-1")
	wantCode(t, err, controlplane.ENOTFOUND)
	must(t, s.DeleteIdempotencyRecord(ctx, "key_1", "k-1"))
	_, err = s.GetIdempotencyRecord(ctx, "key_2", "k-1")
	must(t, err)
	// A deleted record's key can be used again.
	must(t, s.CreateIdempotencyRecord(ctx, &controlplane.IdempotencyRecord{Owner: "key_1", Key: "k-1",
		RequestHash: "sha256:3", CreatedAt: at(0)}))
}
