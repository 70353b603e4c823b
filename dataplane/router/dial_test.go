package router_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// refusingOpener opens SQLite connectors that refuse the DSNs the test
// revoked, with an error wrapping drivers.ErrDenied, as a database refuses
// a revoked credential when a connection is dialed.
type refusingOpener struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (o *refusingOpener) open(name string, dsn drivers.Secret) (driver.Connector, error) {
	c, err := sqlopen.Connector(name, dsn)
	if err != nil {
		return nil, err
	}
	return refusingConnector{o: o, dsn: dsn, Connector: c}, nil
}

func (o *refusingOpener) revoke(dsn string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.revoked == nil {
		o.revoked = map[string]bool{}
	}
	o.revoked[dsn] = true
}

type refusingConnector struct {
	o   *refusingOpener
	dsn drivers.Secret
	driver.Connector
}

func (c refusingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c.o.mu.Lock()
	revoked := c.o.revoked[c.dsn.Reveal()]
	c.o.mu.Unlock()
	if revoked {
		return nil, fmt.Errorf("test: the credential was revoked: %w", drivers.ErrDenied)
	}
	return c.Connector.Connect(ctx)
}

// credentialConnection is sqliteConnection with a DSN of its own per
// credential (SQLite ignores the extra parameter), so that the refusing
// opener can revoke one.
func credentialConnection(path, id string, refresh time.Time) wireConnection {
	c := sqliteConnection(path, id, refresh)
	c.DSN += "&credential=" + id
	return c
}

// concurrently runs query on db from n goroutines at once and returns
// the errors of those that failed.
func concurrently(db *sql.DB, n int, query string) []error {
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = db.ExecContext(context.Background(), query)
		})
	}
	close(start)
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

// refusalFixture is a pool opened with cred_1 on a SQLite database behind
// a refusingOpener. old is that first pool with no idle connection, so
// every query on it dials (a connection kept from before a revocation
// would work: a database ends sessions on its own terms), and it holds an
// empty table hits.
type refusalFixture struct {
	s     *routerServer
	clk   *fakeClock
	path  string
	first wireConnection
	o     *refusingOpener
	p     *router.Pool
	old   *sql.DB
}

// newRefusalFixture opens the fixture's pool with the fake clock's options,
// changed by tune when it is not nil.
func newRefusalFixture(t *testing.T, tune func(*router.Options)) *refusalFixture {
	t.Helper()
	f := &refusalFixture{s: newRouterServer(t), clk: newFakeClock(), o: &refusingOpener{}}
	f.path = filepath.Join(t.TempDir(), "env.db")
	f.first = credentialConnection(f.path, "cred_1", f.clk.Now().Add(time.Hour))
	f.s.answerWith(t, f.first)
	opts := f.clk.options()
	if tune != nil {
		tune(&opts)
	}
	p, err := router.Open(context.Background(), f.s.client(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, f.o.open, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	f.p = p
	f.old = current(t, p)
	f.old.SetMaxIdleConns(0)
	exec(t, f.old, "CREATE TABLE hits (at INTEGER)")
	return f
}

// TestPoolRefusedDialMovesOnce: when the database refuses the credential
// of many dials at once, the pool resolves once, swaps, and every dial is
// made again with the new credential, so no query fails; a later refusal
// on the credential the pool left makes no resolve.
func TestPoolRefusedDialMovesOnce(t *testing.T) {
	f := newRefusalFixture(t, nil)
	s, clk, path, first, o, p, old := f.s, f.clk, f.path, f.first, f.o, f.p, f.old

	o.revoke(first.DSN)
	s.answerWith(t, credentialConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	const dials = 16
	for _, err := range concurrently(old, dials, "INSERT INTO hits VALUES (1)") {
		t.Errorf("a query failed while the credential moved: %v", err)
	}
	st := p.Stats()
	if st.CredentialID != "cred_2" || st.ForcedResolves != 1 || st.Swaps != 1 || st.DialRetries < 1 || st.DialRetries > dials {
		t.Fatalf("stats %+v, want one forced resolve, one swap and 1 to %d dials made again", st, dials)
	}
	if resolves, _ := s.counts(); resolves != 2 {
		t.Fatalf("%d resolves, want Open's and one for all the refused dials", resolves)
	}

	// A late user of the old pool dials with the old credential again.
	retries := st.DialRetries
	exec(t, old, "INSERT INTO hits VALUES (2)")
	if st := p.Stats(); st.ForcedResolves != 1 || st.DialRetries != retries+1 {
		t.Errorf("stats %+v after a refusal of a credential the pool left", st)
	}
	if resolves, _ := s.counts(); resolves != 2 {
		t.Errorf("%d resolves: a refusal of a credential the pool left resolved again", resolves)
	}
	if n := count(t, current(t, p), "hits"); n != dials+1 {
		t.Errorf("%d hits, want %d", n, dials+1)
	}
}

// TestPoolRefusedDialFollowsBackToBackRotations: with rotations back to
// back, the credential the pool already moved to can be revoked too by the
// time a connection of the oldest pool dials. The dial moves on again, to
// the credential the router answers now, and the query does not fail.
func TestPoolRefusedDialFollowsBackToBackRotations(t *testing.T) {
	f := newRefusalFixture(t, nil)
	s, clk, path, first, o, p, old := f.s, f.clk, f.path, f.first, f.o, f.p, f.old

	second := credentialConnection(path, "cred_2", clk.Now().Add(time.Hour))
	s.answerWith(t, second)
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh to cred_2: %v", err)
	}
	o.revoke(first.DSN)
	o.revoke(second.DSN)
	s.answerWith(t, credentialConnection(path, "cred_3", clk.Now().Add(time.Hour)))

	exec(t, old, "INSERT INTO hits VALUES (1)")
	st := p.Stats()
	if st.CredentialID != "cred_3" || st.ForcedResolves != 1 || st.Swaps != 2 || st.DialRetries != 2 {
		t.Fatalf("stats %+v, want cred_3 after one forced resolve, two swaps and two dials made again", st)
	}
	if n := count(t, current(t, p), "hits"); n != 1 {
		t.Errorf("%d hits, want 1", n)
	}
}

// TestPoolRefusedDialBacksOff: while the router still hands out the
// credential the database refuses (an emergency revocation not yet
// re-issued), the query fails with the database's refusal and the pool
// resolves at most once per MinBackoff; once the router answers a new
// credential, the next refused dial after the backoff moves to it. A new
// credential that is refused as well fails its check and is not swapped in.
func TestPoolRefusedDialBacksOff(t *testing.T) {
	f := newRefusalFixture(t, func(o *router.Options) { o.MinBackoff = time.Second })
	s, clk, path, first, o, p, db := f.s, f.clk, f.path, f.first, f.o, f.p, f.old
	ctx := context.Background()
	resolves := func() int { n, _ := s.counts(); return n }
	refused := func(what string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, "SELECT 1"); !errors.Is(err, drivers.ErrDenied) {
			t.Fatalf("%s: %v, want the database's refusal", what, err)
		}
	}

	o.revoke(first.DSN)
	refused("first refusal")
	if n := resolves(); n != 2 {
		t.Fatalf("%d resolves after the first refusal, want 2", n)
	}
	for range 5 {
		refused("refusal within the backoff")
	}
	if n, st := resolves(), p.Stats(); n != 2 || st.ForcedResolves != 1 {
		t.Fatalf("%d resolves, stats %+v: refusals within MinBackoff resolved again", n, st)
	}

	clk.Advance(time.Second)
	refused("refusal after the backoff")
	if n := resolves(); n != 3 {
		t.Fatalf("%d resolves, want one more after MinBackoff", n)
	}

	// A new credential the database refuses too fails its check.
	broken := credentialConnection(path, "cred_2", clk.Now().Add(time.Hour))
	o.revoke(broken.DSN)
	s.answerWith(t, broken)
	clk.Advance(time.Second)
	refused("refusal of both credentials")
	if st := p.Stats(); st.CredentialID != "cred_1" || st.Swaps != 0 || st.Failures != 1 || !errors.Is(st.LastError, drivers.ErrDenied) {
		t.Fatalf("stats %+v: a refused credential was swapped in", st)
	}

	s.answerWith(t, credentialConnection(path, "cred_3", clk.Now().Add(time.Hour)))
	clk.Advance(time.Second)
	if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the query failed once the router answered a working credential: %v", err)
	}
	if st := p.Stats(); st.CredentialID != "cred_3" || st.Swaps != 1 || st.ForcedResolves != 4 || st.LastError != nil {
		t.Errorf("stats %+v", st)
	}
}

// engine is a database that checks credentials: its driver name, a DSN
// with a first credential, and rotate, which makes the database refuse the
// first credential and returns a DSN with a new one.
type engine struct {
	driver  string
	dsn     string
	rotate  func(tb testing.TB) string
	secrets []string
}

// passwordPostgres is a role on a PostgreSQL server that checks passwords
// (scram-sha-256); rotate changes its password behind the pool's back.
func passwordPostgres(tb testing.TB) *engine {
	tb.Helper()
	admin := drivertest.PasswordPostgresURL(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect as admin: %v", err)
	}
	tb.Cleanup(func() { conn.Close(ctx) })
	role := "envplane_router_" + drivertest.RandomSuffix(tb)
	ident := pgx.Identifier{role}.Sanitize()
	setPassword := func(verb string) string {
		password := drivertest.RandomSuffix(tb) + drivertest.RandomSuffix(tb)
		if _, err := conn.Exec(ctx, verb+" ROLE "+ident+" LOGIN PASSWORD '"+password+"'"); err != nil {
			tb.Fatalf("%s role: %v", strings.ToLower(verb), err)
		}
		u, err := url.Parse(admin)
		if err != nil {
			tb.Fatalf("parse the admin URL: %v", err)
		}
		u.User = url.UserPassword(role, password)
		return u.String()
	}
	e := &engine{driver: "postgres", dsn: setPassword("CREATE")}
	tb.Cleanup(func() {
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident); err != nil {
			tb.Errorf("drop role: %v", err)
		}
	})
	e.secrets = append(e.secrets, passwordOf(e.dsn))
	e.rotate = func(tb testing.TB) string {
		dsn := setPassword("ALTER")
		e.secrets = append(e.secrets, passwordOf(dsn))
		return dsn
	}
	return e
}

func passwordOf(dsn string) string {
	u, _ := url.Parse(dsn)
	pw, _ := u.User.Password()
	return pw
}

// libSQL is a database on the Turso double's data plane (tursodb behind an
// edge that checks tokens as Turso does); rotate invalidates its tokens and
// issues a new one.
func libSQL(tb testing.TB) *engine {
	tb.Helper()
	ctx := context.Background()
	p := tursotest.NewPlatform(tb, tursotest.PlatformOptions{DataPlane: true})
	d, err := turso.New(turso.Config{Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token, DatabaseURL: p.DatabaseURL})
	if err != nil {
		tb.Fatal(err)
	}
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(tb)})
	if err != nil {
		tb.Fatalf("create: %v", err)
	}
	e := &engine{driver: "turso"}
	issue := func(slot drivers.Slot) string {
		issued, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: drivers.ScopeReadWrite, Slot: slot, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			tb.Fatalf("issue: %v", err)
		}
		desc, err := d.Descriptor(ctx, drivers.DescriptorRequest{Database: created.Database, Credential: issued.Credential})
		if err != nil {
			tb.Fatalf("descriptor: %v", err)
		}
		e.secrets = append(e.secrets, issued.Credential.Secret.Reveal())
		return desc.DSN.Reveal()
	}
	e.dsn = issue(drivers.SlotA)
	e.rotate = func(tb testing.TB) string {
		if _, err := d.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: created.Database, Scope: drivers.ScopeReadWrite, Slot: drivers.SlotA}); err != nil {
			tb.Fatalf("revoke: %v", err)
		}
		return issue(drivers.SlotB)
	}
	return e
}

// TestPoolRefusedDialRealEngines: on PostgreSQL with password
// authentication and on libSQL, a credential the database stops accepting
// behind the pool's back (a password changed, tokens invalidated) is
// noticed at the next dial: the pool resolves once for all the refused
// dials, swaps, and the queries succeed with the new credential.
func TestPoolRefusedDialRealEngines(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *engine{"postgres": passwordPostgres, "libsql": libSQL} {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			s := newRouterServer(t)
			clk := newFakeClock()
			s.answerWith(t, engineConnection(e.driver, e.dsn, "cred_1", clk.Now().Add(time.Hour)))
			p := openPool(t, s, &opener{}, clk.options())
			old := current(t, p)
			old.SetMaxIdleConns(0) // every query dials

			s.answerWith(t, engineConnection(e.driver, e.rotate(t), "cred_2", clk.Now().Add(time.Hour)))
			const dials = 8
			for _, err := range concurrently(old, dials, "SELECT 1") {
				t.Errorf("a query failed while the credential moved: %v", err)
			}
			st := p.Stats()
			if st.CredentialID != "cred_2" || st.ForcedResolves != 1 || st.Swaps != 1 || st.DialRetries < 1 || st.DialRetries > dials {
				t.Fatalf("stats %+v, want one forced resolve, one swap and 1 to %d dials made again", st, dials)
			}
			if resolves, _ := s.counts(); resolves != 2 {
				t.Errorf("%d resolves, want Open's and one for all the refused dials", resolves)
			}
			exec(t, current(t, p), "SELECT 1")
			out := printed(p, p.Stats(), p.Connection())
			for _, secret := range e.secrets {
				if strings.Contains(out, secret) {
					t.Error("a secret shows in what the pool prints")
				}
			}
		})
	}
}

// engineConnection is a readwrite connection with driver and dsn.
func engineConnection(driver, dsn, id string, refresh time.Time) wireConnection {
	return wireConnection{
		EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: driver,
		Scope: "readwrite", DSN: dsn, URL: "[redacted]", Database: "env", Secret: "see the DSN",
		CredentialID: id, RefreshAfter: refresh,
	}
}
