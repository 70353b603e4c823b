package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
)

// suspension drives one environment through suspend and resume.
type suspension struct {
	h    *harness
	path string
}

func (s suspension) resolve(t *testing.T, scope string) cp.Connection {
	t.Helper()
	var c cp.Connection
	s.h.must(t, http.StatusOK, s.h.admin, "GET", s.path+"/connection?scope="+scope, nil).decode(t, &c)
	return c
}

func (s suspension) suspend(t *testing.T) {
	t.Helper()
	var v cp.EnvironmentView
	s.h.must(t, http.StatusOK, s.h.admin, "POST", s.path+"/suspend", nil).decode(t, &v)
	if v.Status != cp.StatusSuspended {
		t.Fatalf("suspend answered %s", v.Status)
	}
	wantProblem(t, s.h.do(t, s.h.admin, "GET", s.path+"/connection?scope=readwrite", nil), http.StatusLocked, cp.ELOCKED, "")
	wantProblem(t, s.h.do(t, s.h.admin, "POST", s.path+"/schema/migrate", nil), http.StatusLocked, cp.ELOCKED, "")
}

func (s suspension) resume(t *testing.T) {
	t.Helper()
	var v cp.EnvironmentView
	s.h.must(t, http.StatusOK, s.h.admin, "POST", s.path+"/resume", nil).decode(t, &v)
	if v.Status != cp.StatusActive {
		t.Fatalf("resume answered %s", v.Status)
	}
}

// rotate rotates readwrite with no grace and returns the new connection.
func (s suspension) rotate(t *testing.T) cp.Connection {
	t.Helper()
	s.h.must(t, http.StatusOK, s.h.admin, "POST", s.path+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 0})
	return s.resolve(t, "readwrite")
}

// TestSuspensionOnPostgres: on a PostgreSQL server that checks passwords,
// suspending ends the sessions of credentials already handed out and refuses
// their logins; resuming gives the same credentials back; a retried suspend
// and resume converge; rotation works after.
func TestSuspensionOnPostgres(t *testing.T) {
	ctx := context.Background()
	pg, err := pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(drivertest.PasswordPostgresURL(t)), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(pg.Close)
	h := newHarness(t, withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "pg", "type": "development", "target": "pg"})
	s := suspension{h: h, path: "/v1/organizations/acme/environments/pg"}

	connect := func(c cp.Connection) (*pgx.Conn, error) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.DSN.Reveal())
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
		}
		return conn, err
	}
	rw, ro := s.resolve(t, "readwrite"), s.resolve(t, "readonly")
	held, err := connect(rw)
	if err != nil {
		t.Fatalf("connect before suspension: %v", err)
	}
	if _, err := held.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("query before suspension: %v", err)
	}

	s.suspend(t)
	if _, err := held.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session opened before the suspension still runs queries")
	}
	for _, c := range []cp.Connection{rw, ro} {
		if _, err := connect(c); err == nil {
			t.Fatalf("%s credential handed out before the suspension still logs in", c.Scope)
		}
	}
	s.suspend(t) // idempotent
	if _, err := connect(rw); err == nil {
		t.Fatal("readwrite logs in after a second suspend")
	}

	s.resume(t)
	s.resume(t) // idempotent
	for _, c := range []cp.Connection{rw, ro} {
		if got := s.resolve(t, string(c.Scope)); got.CredentialID != c.CredentialID {
			t.Fatalf("%s: resume replaced the credential on a target that keeps them", c.Scope)
		}
		conn, err := connect(c)
		if err != nil {
			t.Fatalf("%s credential after resume: %v", c.Scope, err)
		}
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("%s query after resume: %v", c.Scope, err)
		}
	}

	next := s.rotate(t)
	if next.CredentialID == rw.CredentialID {
		t.Fatal("rotation after resume handed out the same credential")
	}
	if _, err := connect(next); err != nil {
		t.Fatalf("the credential rotated in after resume: %v", err)
	}
}

// TestSuspensionOnTurso: Turso cannot keep tokens aside, so suspending
// invalidates every token of the database (a token handed out before is
// refused by the edge), and resuming issues new ones, which work.
func TestSuspensionOnTurso(t *testing.T) {
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(edge))
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "edge", "type": "development", "target": "edge"})
	s := suspension{h: h, path: "/v1/organizations/acme/environments/edge"}

	rw, ro := s.resolve(t, "readwrite"), s.resolve(t, "readonly")
	if !works(t, "libsql", rw.DSN) || !works(t, "libsql", ro.DSN) {
		t.Fatal("tokens do not work before the suspension")
	}
	s.suspend(t)
	if works(t, "libsql", rw.DSN) || works(t, "libsql", ro.DSN) {
		t.Fatal("a token handed out before the suspension still works")
	}
	for _, c := range []cp.Connection{rw, ro} {
		if st := h.credentialStatus(t, "acme", "edge", c.CredentialID); st != cp.CredentialRevoked {
			t.Fatalf("an invalidated %s token is recorded %s", c.Scope, st)
		}
	}
	s.suspend(t)

	s.resume(t)
	for _, c := range []cp.Connection{rw, ro} {
		got := s.resolve(t, string(c.Scope))
		if got.CredentialID == c.CredentialID || !works(t, "libsql", got.DSN) {
			t.Fatalf("%s after resume: no new working token", c.Scope)
		}
		if works(t, "libsql", c.DSN) {
			t.Fatalf("the %s token from before the suspension works again", c.Scope)
		}
	}
	if next := s.rotate(t); !works(t, "libsql", next.DSN) {
		t.Fatal("the token rotated in after resume does not work")
	}
}

// flakySuspender is the SQLite driver whose SuspendDatabase and
// ResumeDatabase fail while their counters are positive, as a target that
// cannot be reached would.
type flakySuspender struct {
	*sqlitedriver.Driver
	suspendFails, resumeFails atomic.Int32
}

func (f *flakySuspender) SuspendDatabase(ctx context.Context, req drivers.SuspendDatabaseRequest) (drivers.SuspendDatabaseResponse, error) {
	if f.suspendFails.Add(-1) >= 0 {
		return drivers.SuspendDatabaseResponse{}, drivers.ErrUnavailable
	}
	return f.Driver.SuspendDatabase(ctx, req)
}

func (f *flakySuspender) ResumeDatabase(ctx context.Context, req drivers.ResumeDatabaseRequest) (drivers.ResumeDatabaseResponse, error) {
	if f.resumeFails.Add(-1) >= 0 {
		return drivers.ResumeDatabaseResponse{}, drivers.ErrUnavailable
	}
	return f.Driver.ResumeDatabase(ctx, req)
}

// TestSuspensionOnSQLiteConverges: the SQLite target's registry refuses a
// suspended database's credentials. A suspension that cannot reach the
// target answers 503 and the router refuses anyway; the background
// finishes the job once the target answers. A resume that fails leaves the environment suspended
// at the router and at the database; resuming again restores both.
// flakySQLiteEnvironment makes organization acme with environment dev on
// the SQLite target behind a flakySuspender, and returns opens, which opens
// dev's database with its readwrite credential as the router handed it out.
func flakySQLiteEnvironment(t *testing.T) (*harness, *flakySuspender, suspension, func() error) {
	t.Helper()
	flaky := &flakySuspender{}
	h := newHarness(t, withDriver(func(d drivers.Driver) drivers.Driver {
		flaky.Driver = d.(*sqlitedriver.Driver)
		return flaky
	}))
	h.org(t, "acme")
	view := h.env(t, h.admin, "acme", "dev", "development")
	s := suspension{h: h, path: "/v1/organizations/acme/environments/dev"}
	rw := s.resolve(t, "readwrite")
	db := drivers.Database{Name: view.Database.DatabaseName}
	cred := drivers.Credential{Scope: drivers.ScopeReadWrite, Slot: h.credentialSlot(t, "acme", "dev", rw.CredentialID), Secret: rw.Secret}
	opens := func() error {
		resp, err := flaky.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: cred})
		if err == nil {
			resp.DB.Close()
		}
		return err
	}
	return h, flaky, s, opens
}

func TestSuspensionOnSQLiteConverges(t *testing.T) {
	ctx := context.Background()
	h, flaky, s, opens := flakySQLiteEnvironment(t)
	if err := opens(); err != nil {
		t.Fatalf("open before suspension: %v", err)
	}

	flaky.suspendFails.Store(1000)
	wantProblem(t, h.do(t, h.admin, "POST", s.path+"/suspend", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
	wantProblem(t, h.do(t, h.admin, "GET", s.path+"/connection?scope=readwrite", nil), http.StatusLocked, cp.ELOCKED, "")
	if err := opens(); err != nil {
		t.Fatalf("the target was unreachable, yet the database refuses: %v", err)
	}
	flaky.suspendFails.Store(0)
	// Nobody has to suspend again: the database part is retried in the
	// background, with backoff, until the target lets it.
	h.clock.Advance(10 * time.Minute)
	h.svc.Tick(ctx)
	h.svc.Wait()
	if err := opens(); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("open of a suspended database once the target answers: %v, want ErrDenied", err)
	}
	s.suspend(t) // suspending again is harmless

	flaky.resumeFails.Store(1000)
	wantProblem(t, h.do(t, h.admin, "POST", s.path+"/resume", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
	wantProblem(t, h.do(t, h.admin, "GET", s.path+"/connection?scope=readwrite", nil), http.StatusLocked, cp.ELOCKED, "")
	if err := opens(); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("open after a failed resume: %v, want ErrDenied", err)
	}
	flaky.resumeFails.Store(0)
	s.resume(t)
	if err := opens(); err != nil {
		t.Fatalf("open after resume: %v", err)
	}
	if _, err := openDSN(t, s.rotate(t).DSN).Exec("CREATE TABLE after_resume (x)"); err != nil {
		t.Fatalf("write with the credential rotated in after resume: %v", err)
	}
}

// credentialSlot reads one credential's slot from the listing.
func (h *harness) credentialSlot(tb testing.TB, org, env, id string) drivers.Slot {
	tb.Helper()
	var list cp.List[*cp.Credential]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/credentials", nil).decode(tb, &list)
	for _, c := range list.Items {
		if c.ID == id {
			return c.Slot
		}
	}
	tb.Fatalf("no credential %s", id)
	return ""
}

// TestSuspensionResumesAfterCrash: a process that dies after the status
// changed but before the database was suspended leaves a leased operation;
// once the lease expires the reconciler suspends the database.
func TestSuspensionResumesAfterCrash(t *testing.T) {
	ctx := context.Background()
	h, flaky, s, opens := flakySQLiteEnvironment(t)

	// The target fails once, and the process dies while it waits to retry.
	flaky.suspendFails.Store(1)
	var died atomic.Bool
	h.svc.Sleep = func(ctx context.Context, _ time.Duration) error {
		if died.CompareAndSwap(false, true) {
			return context.Canceled
		}
		return ctx.Err()
	}
	wantProblem(t, h.do(t, h.admin, "POST", s.path+"/suspend", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
	if !died.Load() {
		t.Fatal("the suspension did not fail")
	}
	wantProblem(t, h.do(t, h.admin, "GET", s.path+"/connection?scope=readwrite", nil), http.StatusLocked, cp.ELOCKED, "")
	if err := opens(); err != nil {
		t.Fatalf("the database was suspended before the crash: %v", err)
	}
	wantProblem(t, h.do(t, h.admin, "POST", s.path+"/resume", nil), http.StatusConflict, cp.ECONFLICT, "")

	h.clock.Advance(2 * h.svc.Lease)
	if n, err := h.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile claimed %d (err %v), want 1", n, err)
	}
	if err := opens(); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("open after the reconciler finished the suspension: %v, want ErrDenied", err)
	}
	s.resume(t)
	if err := opens(); err != nil {
		t.Fatalf("open after resume: %v", err)
	}
}

// BenchmarkSuspendResume measures one suspend and one resume through the API,
// database part included, on the SQLite target and on PostgreSQL with
// passwords checked: how long an application is cut off at least, and how
// soon after a resume request its credentials work again.
func BenchmarkSuspendResume(b *testing.B) {
	run := func(b *testing.B, h *harness, target string) {
		h.org(b, "acme")
		h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "dev", "type": "development", "target": target})
		path := "/v1/organizations/acme/environments/dev"
		b.ResetTimer()
		for b.Loop() {
			h.must(b, http.StatusOK, h.admin, "POST", path+"/suspend", nil)
			h.must(b, http.StatusOK, h.admin, "POST", path+"/resume", nil)
		}
	}
	b.Run("sqlite", func(b *testing.B) { run(b, newHarness(b, withLogLevel(slog.LevelInfo)), "local") })
	b.Run("postgres", func(b *testing.B) {
		pg, err := pgdriver.New(context.Background(), pgdriver.Config{AdminURL: drivers.Secret(drivertest.PasswordPostgresURL(b)), AppSSLMode: "disable"})
		if err != nil {
			b.Fatalf("postgres driver: %v", err)
		}
		b.Cleanup(pg.Close)
		run(b, newHarness(b, withLogLevel(slog.LevelInfo), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg})), "pg")
	})
}
