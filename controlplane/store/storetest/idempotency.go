package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

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

	// Pruning removes records created strictly before the cut, answered or not.
	must(t, s.CreateIdempotencyRecord(ctx, &controlplane.IdempotencyRecord{Owner: "key_1", Key: "k-new",
		RequestHash: "sha256:4", CreatedAt: at(time.Hour)}))
	must(t, s.CompleteIdempotencyRecord(ctx, "key_2", "k-1", 200, []byte("{}")))
	n, err := s.DeleteIdempotencyRecordsBefore(ctx, at(time.Hour))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteIdempotencyRecordsBefore removed %d records, want the 2 older ones", n)
	}
	for _, k := range [][2]string{{"key_1", "k-1"}, {"key_2", "k-1"}} {
		_, err = s.GetIdempotencyRecord(ctx, k[0], k[1])
		wantCode(t, err, controlplane.ENOTFOUND)
	}
	_, err = s.GetIdempotencyRecord(ctx, "key_1", "k-new")
	must(t, err)
	n, err = s.DeleteIdempotencyRecordsBefore(ctx, at(time.Hour))
	must(t, err)
	if n != 0 {
		t.Errorf("pruning again removed %d records, want 0", n)
	}
}
