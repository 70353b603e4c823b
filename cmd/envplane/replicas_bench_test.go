package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers/drivertest"
)

// BenchmarkReplicaProvisioning measures provisioning throughput with 1, 2
// and 3 `envplane serve` replicas over one PostgreSQL store (a private
// server, fsync off, so its CPU is measured alone) and one SQLite target,
// side by side: each pass starts the replicas on a fresh store database,
// then provisions replicaBatch environments with replicaClients clients
// at once, spread over the replicas round robin, each request waiting
// until its environment is active. It reports environments per second
// (envs/s-Nr) and the CPU time spent per environment by the replicas and
// by the store's server (replica-cpu-ms/env-Nr, store-cpu-ms/env-Nr),
// once with every environment in one organization and once spread over
// replicaClients organizations (the -1org and -6org figures),
// and, sampled every 25ms, how many of the store's sessions are busy
// and what share of them waits on a lock or on I/O: where the time goes
// (adr/0028).
func BenchmarkReplicaProvisioning(b *testing.B) {
	bin := buildCrashBinary(b)
	pg := drivertest.StartPrivatePostgres(b)
	admin := storeConn(b, pg.URL)
	ctx := context.Background()
	const replicaBatch, replicaClients = 30, 6
	type load struct{ replicas, orgs int }
	var loads []load
	for _, orgs := range []int{1, replicaClients} {
		for _, n := range []int{1, 2, 3} {
			loads = append(loads, load{n, orgs})
		}
	}
	type total struct {
		envs                      int
		wall, replica, store      time.Duration
		samples, active, lock, io int
		events                    map[string]int
	}
	totals := map[load]*total{}
	pass := 0
	for b.Loop() {
		for _, l := range loads {
			n := l.replicas
			pass++
			db := fmt.Sprintf("envplane_bench_%d", pass)
			url := pg.StoreDatabase(b, db)
			target := crashTarget{yaml: fmt.Sprintf("driver: sqlite\n    sqlite:\n      dir: %s\n", filepath.Join(b.TempDir(), "databases"))}
			// The defaults of production: lease 5s renewed every second,
			// a background pass every 5s.
			r := newReplicaSet(b, bin, url, target, n, "ENVPLANE_LOG_LEVEL=info", "ENVPLANE_RECONCILE_INTERVAL=5s",
				"ENVPLANE_OPERATIONS_LEASE=5s", "ENVPLANE_OPERATIONS_LEASE_RENEWAL=1s")
			for o := range l.orgs {
				r.call(r.procs[0], http.StatusCreated, "POST", "/v1/organizations", map[string]any{"slug": fmt.Sprintf("acme%d", o), "name": "Acme"}, nil)
			}
			waits := sampleWaits(b, pg.AdminURL(b, db), db)

			replicaCPU := func() time.Duration {
				var d time.Duration
				for _, p := range r.procs {
					d += processCPU(b, p.cmd.Process.Pid)
				}
				return d
			}
			r0, s0, start := replicaCPU(), serverCPU(b, pg.PID()), time.Now()
			var wg sync.WaitGroup
			next := make(chan int)
			for range replicaClients {
				wg.Go(func() {
					for i := range next {
						slug := fmt.Sprintf("e%d", i)
						path := fmt.Sprintf("/v1/organizations/acme%d/environments", i%l.orgs)
						status, data, err := r.procs[i%n].do(r.token, "POST", path, map[string]any{"slug": slug, "type": "development"})
						if err != nil || status != http.StatusCreated {
							b.Errorf("create %s: %d %s, %v; want 201", slug, status, data, err)
						}
					}
				})
			}
			for i := range replicaBatch {
				next <- i
			}
			close(next)
			wg.Wait()
			t := totals[l]
			if t == nil {
				t = &total{events: map[string]int{}}
				totals[l] = t
			}
			t.envs += replicaBatch
			t.wall += time.Since(start)
			t.replica += replicaCPU() - r0
			t.store += serverCPU(b, pg.PID()) - s0
			w := waits()
			t.samples += w.samples
			t.active += w.active
			t.lock += w.lock
			t.io += w.io
			for ev, c := range w.events {
				t.events[ev] += c
			}
			for _, p := range r.procs {
				p.stop(b)
			}
			if _, err := admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, l := range loads {
		t, name := totals[l], fmt.Sprintf("%dr-%dorg", l.replicas, l.orgs)
		b.ReportMetric(float64(t.envs)/t.wall.Seconds(), "envs/s-"+name)
		b.ReportMetric(float64(t.replica.Milliseconds())/float64(t.envs), "replica-cpu-ms/env-"+name)
		b.ReportMetric(float64(t.store.Milliseconds())/float64(t.envs), "store-cpu-ms/env-"+name)
		// Of the store's busy sessions seen by the sampler, the share
		// waiting on a lock (a row another transaction holds) and on I/O.
		b.ReportMetric(float64(t.active)/float64(max(t.samples, 1)), "store-busy-sessions-"+name)
		b.ReportMetric(100*float64(t.lock)/float64(max(t.active, 1)), "lock-wait-%-"+name)
		b.ReportMetric(100*float64(t.io)/float64(max(t.active, 1)), "io-wait-%-"+name)
		b.Logf("%s: store wait events sampled: %v", name, t.events)
	}
}

// waitSample is what sampleWaits saw of the store's sessions.
type waitSample struct {
	samples, active, lock, io int
	events                    map[string]int
}

// sampleWaits samples, every 25ms until the returned function is called,
// the sessions of database db that are running a statement (active) and,
// of those, the ones waiting on a lock or on I/O, by wait event, and the
// tables whose rows are waited for.
func sampleWaits(tb testing.TB, url, db string) func() waitSample {
	tb.Helper()
	conn := storeConn(tb, url)
	stop, done := make(chan struct{}), make(chan waitSample)
	go func() {
		w := waitSample{events: map[string]int{}}
		defer func() { done <- w }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			rows, err := conn.Query(context.Background(), `SELECT coalesce(wait_event_type, ''), coalesce(wait_event, '') FROM pg_stat_activity
				WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`, db)
			if err != nil {
				return
			}
			w.samples++
			for rows.Next() {
				var typ, ev string
				if rows.Scan(&typ, &ev) != nil {
					continue
				}
				w.active++
				switch typ {
				case "Lock":
					w.lock++
				case "IO":
					w.io++
				}
				if typ != "" {
					w.events[typ+":"+ev]++
				}
			}
			rows.Close()
			// Which table the rows waited for belong to.
			rows, err = conn.Query(context.Background(), `SELECT l.relation::regclass::text FROM pg_locks l
				JOIN pg_database d ON d.oid = l.database WHERE NOT l.granted AND l.locktype = 'tuple' AND d.datname = $1`, db)
			if err != nil {
				return
			}
			for rows.Next() {
				var rel string
				if rows.Scan(&rel) == nil {
					w.events["tuple of "+rel]++
				}
			}
			rows.Close()
		}
	}()
	return func() waitSample {
		close(stop)
		return <-done
	}
}

// clockTicks is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTicks = 100

// processCPU is the user and system CPU time pid has used so far, and,
// with children, that of its children which have exited.
func processCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	f := procStat(tb, pid)
	ticks := 0
	for _, i := range []int{13, 14, 15, 16} { // utime, stime, cutime, cstime
		ticks += f[i]
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// serverCPU is the CPU time of the PostgreSQL server whose postmaster is
// pid: its own, its exited backends' (cutime, cstime) and its live
// processes'.
func serverCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	d := processCPU(tb, pid)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, ok := readProcStat(child)
		if ok && f[3] == pid {
			d += time.Duration(f[13]+f[14]) * time.Second / clockTicks
		}
	}
	return d
}

// procStat reads the numeric fields of /proc/<pid>/stat.
func procStat(tb testing.TB, pid int) []int {
	tb.Helper()
	f, ok := readProcStat(pid)
	if !ok {
		tb.Fatalf("cannot read /proc/%d/stat", pid)
	}
	return f
}

// readProcStat returns /proc/<pid>/stat's fields as numbers, indexed as
// proc(5) numbers them less one (ppid at 3, utime at 13); the command
// name and state, which are not numbers, read as 0. ok is false when the
// process is gone.
func readProcStat(pid int) ([]int, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	// The command name is in parentheses and may hold spaces.
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 {
		return nil, false
	}
	fields := append([]string{"0", "0"}, strings.Fields(string(data[end+1:]))...)
	out := make([]int, len(fields))
	for i, s := range fields {
		out[i], _ = strconv.Atoi(s)
	}
	return out, len(out) > 16
}
