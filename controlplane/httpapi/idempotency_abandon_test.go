package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestIdempotencyKeyOfADeadRequest: a key whose first request never answered
// (its process died) is busy for a while, then free again, so the client's
// retry is not refused forever.
func TestIdempotencyKeyOfADeadRequest(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	p, err := h.svc.Authenticate(context.Background(), h.admin)
	if err != nil {
		t.Fatal(err)
	}
	// What a process that died mid-request leaves: a record with no answer.
	dead := "dead-request-key"
	body := map[string]any{"slug": "dev", "type": "development"}
	raw, _ := json.Marshal(body)
	sum := sha256.Sum256(append([]byte("POST /v1/organizations/acme/environments\n"), raw...))
	rec := &cp.IdempotencyRecord{Owner: p.KeyID, Key: dead, RequestHash: hex.EncodeToString(sum[:]), CreatedAt: h.clock.Now()}
	if err := h.svc.Store.CreateIdempotencyRecord(cp.WithPlatformScope(context.Background()), rec); err != nil {
		t.Fatal(err)
	}
	if got := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", body, "Idempotency-Key", dead); got.status != http.StatusConflict {
		t.Fatalf("a key whose first request may still run: %d, want 409", got.status)
	}
	h.clock.Advance(10 * time.Minute)
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", body, "Idempotency-Key", dead)
	replay := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", body, "Idempotency-Key", dead)
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("the retry that took over the key was not stored for replay")
	}
}

// TestIdempotencyKeysAreForgotten: the background pass forgets answers older
// than IdempotencyTTL, so the table does not grow without bound; a key seen
// again afterwards starts afresh.
func TestIdempotencyKeysAreForgotten(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	body := map[string]any{"slug": "dev", "type": "development"}
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", body, "Idempotency-Key", "k1")
	if r := h.svc.Tick(context.Background()); r.Forgotten != 0 {
		t.Fatalf("a fresh answer was forgotten: %+v", r)
	}
	h.clock.Advance(h.svc.IdempotencyTTL + time.Minute)
	if r := h.svc.Tick(context.Background()); r.Forgotten != 1 {
		t.Fatalf("forgot %d answers, want 1", r.Forgotten)
	}
	// The key is free again: the same request now runs (and meets the slug it made).
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", body, "Idempotency-Key", "k1"), http.StatusConflict, cp.ECONFLICT, "slug")
}
