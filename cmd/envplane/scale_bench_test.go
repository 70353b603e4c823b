package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/scaletest"
	pgstore "github.com/envplane/envplane/controlplane/store/postgres"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/drivers/drivertest"
)

// BenchmarkServeStart builds the envplane binary, seeds a registry of 100
// and one of SCALE_ENVS (default 10,000) environments on its SQLite target,
// on each store (sqlite: a data_dir's embedded store; postgres: a database
// on the test server, seeded and served as a user holding only the runtime
// role, adr/0030; local keyring on both), and starts `envplane serve` on
// each registry in turn: it reports the time from exec to the first 200 of
// /readyz (goal ≤ 2 s) and the resident memory (VmRSS) once ready and after
// a list and a few background passes (goal ≤ 300 MB).
func BenchmarkServeStart(b *testing.B) {
	large := 10000
	if n, err := strconv.Atoi(os.Getenv("SCALE_ENVS")); err == nil && n > 0 {
		large = n
	}
	bin := filepath.Join(b.TempDir(), "envplane")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			var fixtures []*startFixture
			for _, n := range []int{100, large} {
				fixtures = append(fixtures, seedForStart(b, engine, n))
			}
			start := map[int][]time.Duration{}
			rssReady, rssSettled := map[int]float64{}, map[int]float64{}
			for b.Loop() {
				for _, f := range fixtures {
					took, ready, settled := startOnce(b, bin, f.config, f.token, f.org)
					start[f.n] = append(start[f.n], took)
					rssReady[f.n], rssSettled[f.n] = max(rssReady[f.n], ready), max(rssSettled[f.n], settled)
				}
			}
			for _, f := range fixtures {
				var sum time.Duration
				for _, d := range start[f.n] {
					sum += d
				}
				b.ReportMetric(float64(sum.Milliseconds())/float64(len(start[f.n])), fmt.Sprintf("start-ms-%d", f.n))
				b.ReportMetric(rssReady[f.n], fmt.Sprintf("rss-ready-MB-%d", f.n))
				b.ReportMetric(rssSettled[f.n], fmt.Sprintf("rss-MB-%d", f.n))
			}
		})
	}
}

// startFixture is a seeded registry and the configuration that serves it.
type startFixture struct {
	n      int
	config string
	token  string
	org    string
}

// seedForStart seeds n environments on engine's store and writes the
// configuration that serves them: a data_dir with the key file and the
// SQLite target, and on postgres the serving user's store_url.
func seedForStart(b *testing.B, engine string, n int) *startFixture {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		b.Fatal(err)
	}
	kr, _, err := local.EnsureFile(filepath.Join(data, "master.key"))
	if err != nil {
		b.Fatal(err)
	}
	yaml := fmt.Sprintf("data_dir: %s\nlisten: 127.0.0.1:0\nlog_level: info\nreconcile_interval: 200ms\n", data)
	seed := scaletest.Options{Environments: n, Target: "local", Driver: "sqlite"}
	var s cp.Store
	switch engine {
	case "sqlite":
		s, err = sqlitestore.Open(ctx, filepath.Join(data, "controlplane.db"))
	case "postgres":
		serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(b)
		s, err = pgstore.Open(ctx, serveURL, pgstore.MigrateAs(migrateURL))
		yaml += fmt.Sprintf("store_url: %q\n", serveURL)
		seed.Analyze = drivertest.Analyze(migrateURL)
	}
	if err != nil {
		b.Fatal(err)
	}
	reg, err := scaletest.Seed(ctx, s, kr, seed)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d environments on %s in %s", n, engine, reg.Took.Round(time.Millisecond))
	config := filepath.Join(dir, "envplane.yaml")
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	mid := reg.Orgs[len(reg.Orgs)/2]
	return &startFixture{n: n, config: config, token: mid.OwnerToken, org: mid.Slug}
}

// startOnce starts serve on config, and returns the time until /readyz
// answered 200, the resident memory then, and the resident memory after a
// page of the organization's environments and a second of background passes.
func startOnce(b *testing.B, bin, config, token, org string) (time.Duration, float64, float64) {
	b.Helper()
	cmd := exec.Command(bin, "serve", "--config", config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var l struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "envplane is serving" {
				addr <- "http://" + l.Listen
				sent = true
			}
		}
	}()
	var url string
	select {
	case url = <-addr:
	case <-time.After(time.Minute):
		b.Fatal("envplane did not log its address within a minute")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := client.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(t0) > time.Minute {
			b.Fatalf("/readyz did not answer 200 within a minute: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(t0)
	ready := vmRSS(b, cmd.Process.Pid)
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/organizations/"+org+"/environments", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("list: status %d", resp.StatusCode)
	}
	time.Sleep(time.Second)
	return took, ready, vmRSS(b, cmd.Process.Pid)
}

// vmRSS reads the process's resident memory, in megabytes, from /proc.
func vmRSS(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatalf("VmRSS: %v", err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}
