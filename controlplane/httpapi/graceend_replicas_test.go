package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers/drivertest"
)

// TestGraceEndAcrossReplicas: replica a's background pass ends the grace of
// a rotated credential and is held just before it revokes the slot on the
// PostgreSQL target, having read the credential still rotating; meanwhile
// replica b rotates again, which ends that grace itself and reissues the
// same slot (the same role) with a new secret. The slot's lock, shared by
// the replicas through the store, makes b wait, so a's revocation cannot
// land on the new secret: the newest credential logs in. Before the lock
// was the store's, b went ahead and a's late revocation left the role
// NOLOGIN ("not permitted to log in"), which the shared server's trust
// authentication does not hide.
func TestGraceEndAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	target := &cp.Target{Name: "pg", Region: "local", Driver: sharedPostgres(t)}
	a := newHarness(t, withPostgresStore(), withClock(clk), withTargets(target))
	b := newHarness(t, asReplicaOf(a), withClock(clk), withTargets(target))
	a.org(t, "acme")
	path := "/v1/organizations/acme/environments/app"
	a.must(t, http.StatusCreated, a.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "app", "type": "development", "target": "pg"})
	rotate := map[string]any{"scope": "readwrite", "grace_seconds": 60}
	a.must(t, http.StatusOK, a.admin, "POST", path+"/credentials/rotate", rotate)
	clk.Advance(10 * time.Minute)

	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a.svc.CrashPoint = func(point string) {
		if point == "credential.grace_end.revoke" {
			once.Do(func() {
				close(reached)
				<-release
			})
		}
	}
	revoked := make(chan error, 1)
	go func() {
		_, err := a.svc.RevokeDue(ctx)
		revoked <- err
	}()
	select {
	case <-reached:
	case <-time.After(time.Minute):
		t.Fatal("replica a's pass did not reach the revocation of the rotated credential")
	}
	rotated := make(chan int, 1)
	req, err := http.NewRequest("POST", b.srv.URL+path+"/credentials/rotate", strings.NewReader(`{"scope": "readwrite", "grace_seconds": 60}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.admin)
	go func() {
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			rotated <- -1
			return
		}
		resp.Body.Close()
		rotated <- resp.StatusCode
	}()

	// Until b's rotation is done, or is waiting for the slot's lock.
	store, err := pgx.Connect(ctx, drivertest.PostgresAdminURLFor(t, a.storeURL))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	status := 0
	for deadline := time.Now().Add(time.Minute); status == 0; {
		select {
		case status = <-rotated:
			continue
		default:
		}
		var waiting int
		if err := store.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica b's rotation neither finished nor waited for the slot")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-revoked; err != nil {
		t.Fatalf("replica a's pass: %v", err)
	}
	if status == 0 {
		status = <-rotated
	}
	if status != http.StatusOK {
		t.Fatalf("replica b's rotation: status %d, want 200", status)
	}

	var c cp.Connection
	b.must(t, http.StatusOK, b.admin, "GET", path+"/connection?scope=readwrite", nil).decode(t, &c)
	conn, err := pgx.Connect(ctx, c.DSN.Reveal())
	if err != nil {
		t.Fatalf("the newest credential does not log in: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("the newest credential: %v", err)
	}
}
