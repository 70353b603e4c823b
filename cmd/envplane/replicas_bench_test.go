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
// which say where the time goes (adr/0028).
func BenchmarkReplicaProvisioning(b *testing.B) {
	bin := buildCrashBinary(b)
	pg := drivertest.StartPrivatePostgres(b)
	admin := storeConn(b, pg.URL)
	ctx := context.Background()
	const replicaBatch, replicaClients = 30, 6
	counts := []int{1, 2, 3}
	type total struct {
		envs                 int
		wall, replica, store time.Duration
	}
	totals := map[int]*total{}
	pass := 0
	for b.Loop() {
		for _, n := range counts {
			pass++
			db := fmt.Sprintf("envplane_bench_%d", pass)
			if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
				b.Fatal(err)
			}
			url := strings.Replace(pg.URL, "/postgres?", "/"+db+"?", 1)
			target := crashTarget{yaml: fmt.Sprintf("driver: sqlite\n    sqlite:\n      dir: %s\n", filepath.Join(b.TempDir(), "databases"))}
			r := newReplicaSet(b, bin, url, target, n, "ENVPLANE_LOG_LEVEL=info")
			r.call(r.procs[0], http.StatusCreated, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme"}, nil)

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
						status, data, err := r.procs[i%n].do(r.token, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development"})
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
			t := totals[n]
			if t == nil {
				t = &total{}
				totals[n] = t
			}
			t.envs += replicaBatch
			t.wall += time.Since(start)
			t.replica += replicaCPU() - r0
			t.store += serverCPU(b, pg.PID()) - s0
			for _, p := range r.procs {
				p.stop(b)
			}
			if _, err := admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, n := range counts {
		t := totals[n]
		b.ReportMetric(float64(t.envs)/t.wall.Seconds(), fmt.Sprintf("envs/s-%dr", n))
		b.ReportMetric(float64(t.replica.Milliseconds())/float64(t.envs), fmt.Sprintf("replica-cpu-ms/env-%dr", n))
		b.ReportMetric(float64(t.store.Milliseconds())/float64(t.envs), fmt.Sprintf("store-cpu-ms/env-%dr", n))
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
