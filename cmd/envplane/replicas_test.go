package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers/drivertest"
)

// replicaSet is several `envplane serve` processes (the crash-point build,
// whose clock a test may skew) over one PostgreSQL store and one SQLite
// target, as replicas on one machine run: each with its own lease owner,
// listener and log.
type replicaSet struct {
	t        testing.TB
	bin      string
	dir      string
	config   string
	storeURL string
	target   crashTarget
	extra    []string // every replica's environment beyond the store's URL
	token    string
	procs    []*serveProcess
	// logs are every process's log, killed holds those of the processes
	// killed with SIGKILL.
	logs, killed []string
}

// newReplicaSet writes the replicas' configuration (lease 5s, renewed
// every 500ms, reconcile every 200ms: a renewal may be late by 4.5 s on a
// starved machine before a live replica loses its lease), bootstraps the store with the
// binary and starts n replicas, with extra in their environment.
func newReplicaSet(t testing.TB, bin, storeURL string, target crashTarget, n int, extra ...string) *replicaSet {
	t.Helper()
	r := &replicaSet{t: t, bin: bin, dir: t.TempDir(), storeURL: storeURL, target: target, extra: extra}
	r.config = filepath.Join(r.dir, "envplane.yaml")
	yaml := fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
log_level: debug
default_target: t
reconcile_interval: 200ms
operations:
  lease: 5s
  lease_renewal: 500ms
targets:
  - name: t
    region: local
    %s`, filepath.Join(r.dir, "data"), r.target.yaml)
	if err := os.WriteFile(r.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "bootstrap", "--config", r.config)
	cmd.Env = r.env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("envplane bootstrap: %v", err)
	}
	r.token = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		for _, p := range r.procs {
			p.stop(t)
		}
	})
	for range n {
		r.start()
	}
	return r
}

// env is the replicas' environment: the store's URL (it may hold a
// password: it goes in the environment, never in a log or a failure).
func (r *replicaSet) env(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ENVPLANE_") })
	env = append(env, "ENVPLANE_STORE_URL="+r.storeURL)
	return append(append(env, r.extra...), extra...)
}

// start starts one more replica with extra environment and returns its index.
func (r *replicaSet) start(extra ...string) int {
	r.t.Helper()
	logPath := filepath.Join(r.dir, fmt.Sprintf("replica-%02d.log", len(r.logs)))
	r.logs = append(r.logs, logPath)
	r.procs = append(r.procs, startServe(r.t, r.bin, r.config, logPath, r.env(extra...)))
	return len(r.procs) - 1
}

// kill ends replica i with SIGKILL, as kill -9 would.
func (r *replicaSet) kill(i int) {
	r.t.Helper()
	p := r.procs[i]
	if err := p.cmd.Process.Kill(); err != nil {
		r.t.Fatalf("kill -9 replica %d: %v", i, err)
	}
	<-p.exited
	r.killed = append(r.killed, p.log)
}

// live returns a replica that is still running.
func (r *replicaSet) live() *serveProcess {
	for _, p := range r.procs {
		select {
		case <-p.exited:
		default:
			return p
		}
	}
	r.t.Fatal("no replica is running")
	return nil
}

// call sends a request as the platform admin to replica p and decodes
// the answer into out; any status other than want fails the test.
func (r *replicaSet) call(p *serveProcess, want int, method, path string, body, out any) {
	r.t.Helper()
	status, data, err := p.do(r.token, method, path, body)
	if err != nil || status != want {
		r.t.Fatalf("%s %s: %d %s, %v; want %d", method, path, status, data, err, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// accept sends a request that starts an operation without waiting for
// it (Prefer: wait=0) and returns the status: 202 when it was taken.
func (r *replicaSet) accept(p *serveProcess, method, path string, body any) (int, error) {
	status, _, err := p.do(r.token, method, path, body, "Prefer", "wait=0")
	return status, err
}

// environments lists acme's environments by slug.
func (r *replicaSet) environments() map[string]*cp.EnvironmentView {
	r.t.Helper()
	var list struct {
		Items []*cp.EnvironmentView `json:"items"`
	}
	r.call(r.live(), http.StatusOK, "GET", "/v1/organizations/acme/environments?limit=500", nil, &list)
	out := map[string]*cp.EnvironmentView{}
	for _, v := range list.Items {
		out[v.Slug] = v
	}
	return out
}

// awaitSettled waits until no operation of the store is unfinished and
// returns how long that took.
func (r *replicaSet) awaitSettled(ctx context.Context, store *pgx.Conn) time.Duration {
	r.t.Helper()
	start := time.Now()
	for deadline := start.Add(2 * time.Minute); ; {
		var open int
		if err := store.QueryRow(ctx, `SELECT count(*) FROM operations WHERE status IN ('pending', 'running')`).Scan(&open); err != nil {
			r.t.Fatalf("count unfinished operations: %v", err)
		}
		if open == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d operations still unfinished after 2 minutes", open)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepRecord is one "operation step" line of a replica's log.
type stepRecord struct {
	log  string
	ok   bool
	step string
}

// steps reads every replica's log: the steps each operation ran, the
// operations each replica resumed, and the lines that say a lease was
// lost (two replicas on one operation).
func (r *replicaSet) steps() (byOp map[string][]stepRecord, resumed map[string][]string, lost []string) {
	r.t.Helper()
	byOp, resumed = map[string][]stepRecord{}, map[string][]string{}
	for _, path := range r.logs {
		readServeLog(r.t, path, []string{r.token}, func(line serveLogLine) {
			switch {
			case line.Msg == "operation step":
				byOp[line.Operation] = append(byOp[line.Operation], stepRecord{log: path, ok: line.OK, step: line.Step})
			case line.Msg == "resuming operation":
				resumed[path] = append(resumed[path], line.Operation)
			case strings.Contains(line.Msg, "lease lost") || strings.Contains(line.Err, "leased by another owner"):
				lost = append(lost, filepath.Base(path)+": "+line.Msg+" "+line.Operation)
			}
		})
	}
	return byOp, resumed, lost
}

// checkRanOnce checks, once the processes are stopped, that no operation
// is unfinished or failed and that each step of each operation the store
// holds ran to completion once across all replicas: at most once where
// the operation was resumed (its replica died, or its lease lapsed while
// the store was down, perhaps after it completed a step and before it
// logged so). With strict, no replica may have lost a lease to another
// either: nothing but a death ends a lease. It returns the operations by
// kind and, by log, the operations each replica resumed.
func (r *replicaSet) checkRanOnce(ctx context.Context, store *pgx.Conn, strict bool) (kinds map[string]int, resumed map[string][]string) {
	r.t.Helper()
	byOp, resumed, lost := r.steps()
	if strict {
		for _, l := range lost {
			r.t.Errorf("a replica lost an operation's lease to another while working on it: %s", l)
		}
	}
	wasResumed := map[string]bool{}
	for _, ops := range resumed {
		for _, op := range ops {
			wasResumed[op] = true
		}
	}
	rows, err := store.Query(ctx, `SELECT id, kind, status, step FROM operations`)
	if err != nil {
		r.t.Fatal(err)
	}
	type opRow struct{ id, kind, status, step string }
	ops, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (opRow, error) {
		var o opRow
		return o, row.Scan(&o.id, &o.kind, &o.status, &o.step)
	})
	if err != nil {
		r.t.Fatal(err)
	}
	kinds = map[string]int{}
	for _, op := range ops {
		kinds[op.kind]++
		if op.status != string(cp.OpSucceeded) {
			r.t.Errorf("operation %s (%s) ended %s at %s, want succeeded", op.id, op.kind, op.status, op.step)
			continue
		}
		var steps []string
		for _, k := range sagaSteps {
			if string(k.kind) == op.kind {
				steps = k.steps
			}
		}
		if steps == nil {
			r.t.Errorf("operation %s of unexpected kind %s", op.id, op.kind)
			continue
		}
		for _, step := range steps {
			n := 0
			for _, s := range byOp[op.id] {
				if s.ok && s.step == step {
					n++
				}
			}
			if n > 1 || (n == 0 && !wasResumed[op.id]) {
				r.t.Errorf("operation %s (%s): step %s completed %d times, want once", op.id, op.kind, step, n)
			}
		}
	}
	// The audit trail agrees: nothing that happens once per object (an
	// environment provisioned or deleted, a credential's grace ended) is
	// recorded twice.
	dup, err := store.Query(ctx, `SELECT action, target, count(*) FROM audit_events
		WHERE action IN ('environment.provisioned', 'environment.deleted', 'credentials.rotated', 'credential.grace_ended')
		GROUP BY action, target HAVING count(*) > 1`)
	if err != nil {
		r.t.Fatal(err)
	}
	for dup.Next() {
		var action, target string
		var n int
		if err := dup.Scan(&action, &target, &n); err != nil {
			r.t.Fatal(err)
		}
		r.t.Errorf("audit event %s recorded %d times for %s", action, n, target)
	}
	dup.Close()
	return kinds, resumed
}

// checkTarget checks that the target holds one database for each active
// environment and nothing else: no step made a second database and no
// deletion left one behind.
func (r *replicaSet) checkTarget(t *testing.T, envs map[string]*cp.EnvironmentView) {
	t.Helper()
	var live []string
	for slug, v := range envs {
		if v.Status != cp.StatusActive || v.Database == nil {
			t.Errorf("environment %s is %s, want active", slug, v.Status)
			continue
		}
		live = append(live, v.Database.DatabaseName)
	}
	if other := r.target.others(t, live); len(other) > 0 {
		t.Errorf("the target holds what no live environment owns: %v", other)
	}
	held := r.target.remains(t, live)
	for _, name := range live {
		if !slices.Contains(held, name+".db") {
			t.Errorf("the database %s of a live environment is missing on the target", name)
		}
	}
}

// storeConn connects the test to the store, to read what the replicas
// recorded.
func storeConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect to the store: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestReplicas runs real `envplane serve` replicas, built once, over one
// PostgreSQL store: three sharing the work with one killed and one whose
// clock is wrong, and three across a restart of the store.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the envplane binary")
	}
	bin := buildCrashBinary(t)
	t.Run("three share the work", func(t *testing.T) { threeShareTheWork(t, bin) })
	t.Run("the store restarts", func(t *testing.T) { storeRestarts(t, bin) })
}

// threeShareTheWork drives provisioning, rotation and deletion through
// three replicas at once; one replica is killed with SIGKILL while its
// provisionings run, and the others take them over once their leases end.
// Then a replica whose clock runs 30 s ahead joins: leases are measured
// on the store's clock, so it claims nothing the others hold. At the end
// every operation succeeded, each step of each ran to completion once, no
// replica lost a lease to another, and the target holds exactly one
// database per environment.
func threeShareTheWork(t *testing.T, bin string) {
	ctx := context.Background()
	// The replicas serve as a user that owns nothing and migrate as the
	// server's superuser, all three starting at once (adr/0030).
	serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(t)
	r := newReplicaSet(t, bin, serveURL, sqliteCrashTarget(t), 3, "ENVPLANE_STORE_MIGRATE_URL="+migrateURL)
	// Inspected as the server's superuser: row-level security shows the
	// store's own user nothing outside a scope (adr/0027).
	store := storeConn(t, migrateURL)
	r.call(r.procs[0], http.StatusCreated, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme"}, nil)

	// Provisioning through the three at once; replica 2 takes its share
	// all at once and dies as soon as it has, in the middle of their steps.
	const perReplica = 6
	create := func(wg *sync.WaitGroup, i, j int) {
		wg.Go(func() {
			slug := fmt.Sprintf("r%d-%d", i, j)
			if status, err := r.accept(r.procs[i], "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development"}); err != nil || status != http.StatusAccepted {
				t.Errorf("create %s through replica %d: %d, %v; want 202", slug, i, status, err)
			}
		})
	}
	var wg, doomed sync.WaitGroup
	for j := range perReplica {
		create(&wg, 0, j)
		create(&wg, 1, j)
		create(&doomed, 2, j)
	}
	doomed.Wait()
	r.kill(2)
	wg.Wait()
	took := r.awaitSettled(ctx, store)
	t.Logf("replica 2 killed with its provisionings running; all settled %v later (lease 5s, reconcile every 200ms)", took.Round(time.Millisecond))

	// The killed replica comes back; rotations, deletions and more
	// provisioning go through all three at once.
	r.start()
	live := []*serveProcess{r.procs[0], r.procs[1], r.procs[3]}
	for i, p := range live {
		wg.Go(func() {
			for j := range perReplica {
				var method, path string
				var body any
				switch slug := fmt.Sprintf("r%d-%d", i, j); j % 3 {
				case 0:
					method, path, body = "POST", "/v1/organizations/acme/environments/"+slug+"/credentials/rotate", map[string]any{"scope": "all", "grace_seconds": 0, "reason": "replicas test"}
				case 1:
					method, path = "DELETE", "/v1/organizations/acme/environments/"+slug
				default:
					method, path, body = "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug + "-more", "type": "development"}
				}
				// A rotation may be done before it answers (200).
				if status, err := r.accept(p, method, path, body); err != nil || (status != http.StatusAccepted && status != http.StatusOK) {
					t.Errorf("%s %s through replica %d: %d, %v; want 202 or 200", method, path, i, status, err)
				}
			}
		})
	}
	wg.Wait()
	r.awaitSettled(ctx, store)

	// A replica whose clock is 30 s ahead joins while provisioning goes on
	// through the others: were leases on its clock, it would take every
	// lease the others hold (5 s long, 30 s in its past).
	skewed := r.start("ENVPLANE_TEST_CLOCK_SKEW=30s")
	for i, p := range live {
		wg.Go(func() {
			for j := range perReplica {
				slug := fmt.Sprintf("skew%d-%d", i, j)
				if status, err := r.accept(p, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development"}); err != nil || status != http.StatusAccepted {
					t.Errorf("create %s through replica %d: %d, %v; want 202", slug, i, status, err)
				}
			}
		})
	}
	wg.Wait()
	var made cp.EnvironmentOperationResponse
	r.call(r.procs[skewed], http.StatusCreated, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "by-skewed", "type": "development"}, &made)
	var storeNow time.Time
	if err := store.QueryRow(ctx, `SELECT now()`).Scan(&storeNow); err != nil {
		t.Fatal(err)
	}
	if lag := storeNow.Sub(made.Operation.CreatedAt); lag < 0 || lag > 15*time.Second {
		t.Errorf("the skewed replica stamped its operation %v before the store's now, want its time on the store's clock", lag.Round(time.Millisecond))
	}
	r.awaitSettled(ctx, store)
	envs := r.environments()

	for _, p := range r.procs {
		p.stop(t)
	}
	kinds, resumed := r.checkRanOnce(ctx, store, true)
	if n := len(resumed[r.logs[skewed]]); n > 0 {
		t.Errorf("the replica 30 s ahead resumed %d operations the others held", n)
	}
	// The default environment, the first round less its deletions plus
	// its creations, the third round and the skewed replica's.
	if want := 1 + 3*perReplica + 3*perReplica + 1; len(envs) != want {
		t.Errorf("%d environments, want %d", len(envs), want)
	}
	r.checkTarget(t, envs)
	takenOver := 0
	for log, ops := range resumed {
		if !slices.Contains(r.killed, log) {
			takenOver += len(ops)
		}
	}
	if takenOver == 0 {
		t.Error("no replica resumed an operation of the killed one: the kill came too late to test a takeover")
	}
	t.Logf("operations by kind %v; %d resumed after the kill; %d environments, one database each", kinds, takenOver, len(envs))
}

// storeRestarts restarts the store, a private PostgreSQL server, while
// three replicas provision through it: while it is down /readyz says so
// (503); once it is back every replica reconnects (/readyz 200), the
// operations cut off resume, and every provisioning a replica accepted
// ends active with one database, each step completed once. A create the
// outage refuses is 503, never 500.
func storeRestarts(t *testing.T, bin string) {
	ctx := context.Background()
	pg := drivertest.StartPrivatePostgres(t)
	storeURL := pg.StoreDatabase(t, "envplane")
	admin := storeConn(t, pg.AdminURL(t, "postgres"))
	r := newReplicaSet(t, bin, storeURL, sqliteCrashTarget(t), 3)
	r.call(r.procs[0], http.StatusCreated, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme"}, nil)

	// Provisioning through the three replicas, round robin, until stop;
	// a request the outage refuses is noted, not retried.
	var mu sync.Mutex
	var accepted []string
	refused := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				slug := fmt.Sprintf("r%d-%d", i, j)
				status, err := r.accept(r.procs[i], "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development"})
				mu.Lock()
				if err == nil && status == http.StatusAccepted {
					accepted = append(accepted, slug)
				} else {
					refused[status]++
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	acceptedSoFar := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	waitAccepted := func(n int) {
		for deadline := time.Now().Add(time.Minute); acceptedSoFar() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d provisionings accepted, want %d", acceptedSoFar(), n)
			}
		}
	}
	waitAccepted(9)
	admin.Close(ctx)
	before := acceptedSoFar()
	pg.Restart(t, func() {
		for i, p := range r.procs {
			if status, _, err := p.do("", "GET", "/readyz", nil); err != nil || status != http.StatusServiceUnavailable {
				t.Errorf("replica %d's /readyz with the store down: %d, %v; want 503", i, status, err)
			}
		}
	})
	for i, p := range r.procs {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if status, _, err := p.do("", "GET", "/readyz", nil); err == nil && status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d's /readyz did not recover after the store restarted", i)
			}
		}
	}
	waitAccepted(acceptedSoFar() + 9)
	close(stop)
	wg.Wait()

	// The outage is the store's, not the replicas' fault: a refusal
	// answers 503 (try again), never 500.
	for status, n := range refused {
		if status != http.StatusServiceUnavailable {
			t.Errorf("%d creates refused with %d while the store was down; want 503 only", n, status)
		}
	}
	store := storeConn(t, pg.AdminURL(t, "envplane"))
	took := r.awaitSettled(ctx, store)
	envs := r.environments()
	for _, slug := range accepted {
		if v := envs[slug]; v == nil || v.Status != cp.StatusActive {
			t.Errorf("environment %s, accepted, is %+v after the restart, want active", slug, v)
		}
	}
	for _, p := range r.procs {
		p.stop(t)
	}
	kinds, resumed := r.checkRanOnce(ctx, store, false)
	n := 0
	for _, ops := range resumed {
		n += len(ops)
	}
	r.checkTarget(t, envs)
	t.Logf("%d provisionings accepted (%d before the restart), refused by status while the store was down: %v; %d operations resumed; settled %v after the load stopped; operations by kind %v",
		len(accepted), before, refused, n, took.Round(time.Millisecond), kinds)
}
