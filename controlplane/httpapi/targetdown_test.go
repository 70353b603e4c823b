package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
)

// switchedProxy forwards TCP connections to a real server while it is on.
// Off, it refuses new connections and cuts the open ones, as a stopped
// server would; hanging, it accepts connections and never answers, as a
// server behind a black hole would.
type switchedProxy struct {
	addr, upstream string

	mu    sync.Mutex
	ln    net.Listener
	hang  bool
	conns []net.Conn
}

func newSwitchedProxy(t *testing.T, upstream string) *switchedProxy {
	t.Helper()
	p := &switchedProxy{upstream: upstream}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.off)
	return p
}

func (p *switchedProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hang := p.hang
			p.mu.Unlock()
			if hang {
				continue
			}
			go p.pipe(c)
		}
	}()
}

func (p *switchedProxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up)
	p.mu.Unlock()
	go func() {
		io.Copy(up, c)
		up.Close()
	}()
	io.Copy(c, up)
	c.Close()
}

// off closes the listener and every connection.
func (p *switchedProxy) off() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// on listens again on the same address, forwarding (or hanging); it
// leaves a proxy that is on already as it is.
func (p *switchedProxy) on(t *testing.T, hang bool) {
	t.Helper()
	p.mu.Lock()
	same := p.ln != nil && p.hang == hang
	p.mu.Unlock()
	if same {
		return
	}
	p.off()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.hang = hang
	p.mu.Unlock()
	p.serve(ln)
}

// proxiedPostgres is a PostgreSQL target "pg" reached through a switched
// proxy in front of the real server. The driver's connections have no
// timeout of their own: the service's bounds are what stops a hang.
func proxiedPostgres(t *testing.T) (*cp.Target, *switchedProxy) {
	t.Helper()
	admin, err := pgx.ParseConfig(drivertest.PostgresAdminURL(t))
	if err != nil {
		t.Fatalf("admin url: %v", err)
	}
	p := newSwitchedProxy(t, net.JoinHostPort(admin.Host, "5432"))
	host, port, _ := net.SplitHostPort(p.addr)
	url := "postgres://" + admin.User + "@" + host + ":" + port + "/" + admin.Database + "?sslmode=disable"
	d, err := pgdriver.New(context.Background(), pgdriver.Config{AdminURL: drivers.Secret(url), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(d.Close)
	return &cp.Target{Name: "pg", Region: "eu", Driver: d, Capacity: 50}, p
}

// envEvents returns the actions of the audit events of one environment,
// oldest first.
func (h *harness) envEvents(tb testing.TB, org, envID string) []string {
	tb.Helper()
	var events cp.List[*cp.AuditEvent]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/audit-events?limit=500", nil).decode(tb, &events)
	var out []string
	for i := len(events.Items) - 1; i >= 0; i-- {
		if e := events.Items[i]; e.EnvironmentID == envID {
			out = append(out, e.Action)
		}
	}
	return out
}

// pgDatabaseExists reports whether the real server holds the named database.
func pgDatabaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, drivertest.PostgresAdminURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatalf("query: %v", err)
	}
	return n > 0
}

// A PostgreSQL target stopped for ten minutes: provisioning on it fails at
// once and says why, its cleanup waits for the target with backoff, nothing
// else touches the target but a probe that backs off, each environment's
// audit log gains a handful of events at most, the platform's one per
// change of the target's state, and /readyz stays about the store. Once the
// target is back, the cleanup finishes (no orphan database) and the
// rotation that fell due meanwhile runs.
func TestTargetStoppedForTenMinutes(t *testing.T) {
	ctx := context.Background()
	target, proxy := proxiedPostgres(t)
	h := newHarness(t, withTargets(target))
	t.Cleanup(func() { proxy.on(t, false) }) // before the harness drops what is left
	h.svc.CredentialTTL[cp.TypeDevelopment] = 8 * time.Minute
	// The SQLite target beside pg is probed once; pg's probes follow its
	// backoff while it is down.
	h.svc.TargetCheck = time.Hour
	h.org(t, "acme")
	member := h.member(t, "acme", "dev@example.com", cp.OrgMember)

	steady := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "steady", "type": "development", "target": "pg"}).environment(t)
	if steady.Status != cp.StatusActive {
		t.Fatalf("steady is %s, want active", steady.Status)
	}
	steadyBefore := len(h.envEvents(t, "acme", steady.ID))

	proxy.off()
	var accepted cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "stuck", "type": "development", "target": "pg"}, "Prefer", "wait=0").decode(t, &accepted)
	h.svc.Wait()
	stuck := h.envView(t, "acme", "stuck")
	if stuck.Status != cp.StatusFailed || !strings.Contains(stuck.Error, "target unavailable") {
		t.Fatalf("stuck is %s (%q), want failed saying the target is unavailable\n%s", stuck.Status, stuck.Error, h.logs)
	}
	var op cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+accepted.Operation.ID, nil).decode(t, &op)
	if op.Status.Done() {
		t.Fatalf("operation %s with its cleanup left on a stopped target, want it still running", op.Status)
	}
	db, err := h.svc.Store.GetEnvironmentDatabase(cp.WithPlatformScope(ctx), stuck.ID)
	if err != nil {
		t.Fatal(err)
	}

	if resp := h.do(t, "", "GET", "/readyz", nil); resp.status != http.StatusOK {
		t.Errorf("/readyz with a target down = %d, want 200 (it is about the store)", resp.status)
	}

	// Ten minutes of background passes, one every 5 s.
	var report cp.TickReport
	for range 120 {
		h.clock.Advance(5 * time.Second)
		r := h.svc.Tick(ctx)
		report.Resumed += r.Resumed
		report.Probed += r.Probed
		report.Rotated += r.Rotated
	}
	// Backoff from 5 s doubling to 5 min, each wait at least half its
	// step: at most about ten tries in ten minutes, where a retry on every
	// pass would make 120.
	if report.Resumed > 12 || report.Probed > 15 {
		t.Errorf("in 10 minutes down: cleanup resumed %d times, targets probed %d times; want backoff (≤12, ≤15)", report.Resumed, report.Probed)
	}
	if report.Resumed < 2 {
		t.Errorf("in 10 minutes down: cleanup resumed %d times; want it still tried", report.Resumed)
	}
	if report.Rotated != 0 {
		t.Errorf("%d scheduled rotations started on a target known to be down", report.Rotated)
	}
	stuckEvents := h.envEvents(t, "acme", stuck.ID)
	if len(stuckEvents) > 3 {
		t.Errorf("the failed environment's audit log holds %d events after 10 minutes: %v", len(stuckEvents), stuckEvents)
	}
	if got := h.envEvents(t, "acme", steady.ID)[steadyBefore:]; len(got) != 0 {
		t.Errorf("the active environment gained audit events while its target was down: %v", got)
	}
	down := 0
	for _, e := range platformEvents(t, h) {
		if e.Action == "target.unavailable" && e.Target == "pg" {
			down++
		}
	}
	if down != 1 {
		t.Errorf("%d target.unavailable events for one outage, want 1", down)
	}

	// The platform admin sees the target's health; a member its name and region.
	var ts cp.List[cp.TargetView]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/targets", nil).decode(t, &ts)
	pg := findTarget(t, ts.Items, "pg")
	if pg.Health == nil || pg.Health.State != cp.TargetDown || pg.Health.Error != "target unavailable" || pg.Used == nil || *pg.Used != 2 || *pg.Capacity != 50 || pg.Driver != "postgres" {
		t.Errorf("admin's view of pg = %+v (health %+v)", pg, pg.Health)
	}
	var seen cp.List[cp.TargetView]
	h.must(t, http.StatusOK, member, "GET", "/v1/targets", nil).decode(t, &seen)
	if pg := findTarget(t, seen.Items, "pg"); pg.Region != "eu" || pg.Health != nil || pg.Used != nil || pg.Capacity != nil || pg.Driver != "" {
		t.Errorf("a member sees %+v, want the name and region only", pg)
	}
	if p := h.do(t, "", "GET", "/v1/targets", nil).problem(t); p.Status != http.StatusUnauthorized || p.Code != "unauthorized" {
		t.Errorf("GET /v1/targets without a key = %d %s, want 401 unauthorized", p.Status, p.Code)
	}
	if m := string(h.do(t, "", "GET", "/metrics", nil).body); !strings.Contains(m, `envplane_target_up{target="pg"} 0`) {
		t.Errorf("metrics do not show pg down:\n%s", grepLines(m, "envplane_target_up"))
	}

	// The target comes back: within the probe's backoff (at most 5 min),
	// it is up, the cleanup ends and the due rotation runs.
	proxy.on(t, false)
	for range 70 {
		h.clock.Advance(5 * time.Second)
		r := h.svc.Tick(ctx)
		report.Rotated += r.Rotated
	}
	h.svc.Wait()
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+accepted.Operation.ID, nil).decode(t, &op)
	if op.Status != cp.OpFailed {
		t.Errorf("the failed provisioning's operation is %s once the target is back, want failed", op.Status)
	}
	if pgDatabaseExists(t, db.Name) {
		t.Errorf("database %s of the failed provisioning is still on the target", db.Name)
	}
	if report.Rotated == 0 {
		t.Error("the rotation that fell due while the target was down did not run once it was back")
	}
	if m := string(h.do(t, "", "GET", "/metrics", nil).body); !strings.Contains(m, `envplane_target_up{target="pg"} 1`) {
		t.Errorf("metrics do not show pg up again:\n%s", grepLines(m, "envplane_target_up"))
	}
	if !containsAction(platformEvents(t, h), "target.available") {
		t.Error("no target.available event once the target was back")
	}
}

// A target that accepts connections and never answers cannot hold a
// provisioning: each attempt is bounded by StepTimeout, and the
// environment ends failed saying the target is unavailable.
func TestHangingTargetFailsProvisioningInBoundedTime(t *testing.T) {
	target, proxy := proxiedPostgres(t)
	h := newHarness(t, withTargets(target))
	t.Cleanup(func() { proxy.on(t, false) }) // before the harness drops what is left
	h.svc.StepTimeout = 300 * time.Millisecond
	h.org(t, "acme")
	proxy.on(t, true)

	var accepted cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "hung", "type": "development", "target": "pg"}, "Prefer", "wait=0").decode(t, &accepted)
	waited := make(chan struct{})
	go func() {
		h.svc.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute): // a guard against a hang, not a speed check
		t.Fatal("the provisioning on a hanging target never ended")
	}
	if v := h.envView(t, "acme", "hung"); v.Status != cp.StatusFailed || !strings.Contains(v.Error, "target unavailable") {
		t.Fatalf("hung is %s (%q), want failed saying the target is unavailable\n%s", v.Status, v.Error, h.logs)
	}
}

// ProvisionTimeout bounds a provisioning however many attempts are allowed:
// past it, the environment ends failed with the last step's reason.
func TestProvisionTimeoutBoundsAttempts(t *testing.T) {
	var h *harness
	h, fd := newFaultHarness(t, func(method string, n int) fault {
		if method == "CreateDatabase" && n >= 2 { // the first is the org's default environment
			h.clock.Advance(50 * time.Second)
			return fault{err: errors.Join(drivers.ErrUnavailable, errors.New("connection refused"))}
		}
		return fault{}
	})
	h.svc.Attempts = 1000
	h.org(t, "acme")

	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "slow", "type": "development"}, "Prefer", "wait=0")
	h.svc.Wait()
	v := h.envView(t, "acme", "slow")
	if v.Status != cp.StatusFailed || v.Error != "create_database: target unavailable" {
		t.Fatalf("slow is %s (%q), want failed: create_database: target unavailable", v.Status, v.Error)
	}
	// 50 s per attempt on the clock, 2 minutes allowed: three attempts.
	if n := fd.count("CreateDatabase") - 1; n != 3 {
		t.Errorf("%d attempts to create the database, want 3 within ProvisionTimeout", n)
	}
}

// platformEvents returns the platform's own audit events, newest first.
func platformEvents(t *testing.T, h *harness) []*cp.AuditEvent {
	t.Helper()
	events, _, err := h.svc.Store.ListAuditEvents(cp.WithPlatformScope(context.Background()), "", cp.Page{Limit: cp.MaxPageLimit})
	if err != nil {
		t.Fatalf("platform audit events: %v", err)
	}
	return events
}

func findTarget(t *testing.T, ts []cp.TargetView, name string) cp.TargetView {
	t.Helper()
	for _, v := range ts {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no target %s in %+v", name, ts)
	return cp.TargetView{}
}

func containsAction(events []*cp.AuditEvent, action string) bool {
	for _, e := range events {
		if e.Action == action {
			return true
		}
	}
	return false
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
