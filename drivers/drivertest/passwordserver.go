package drivertest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PasswordPostgresURL returns the admin URL of a PostgreSQL server that
// checks passwords, for what a trust-authenticated server hides (a wrong,
// rotated or revoked password refused). It is the shared test server when
// that one checks passwords; otherwise it starts a private server
// (StartPasswordPostgres). With neither it reports a missing server (a
// failure under CI=true).
func PasswordPostgresURL(tb testing.TB) string {
	tb.Helper()
	shared := PostgresAdminURL(tb)
	if ChecksPasswords(tb, shared) {
		return shared
	}
	return StartPasswordPostgres(tb)
}

// ChecksPasswords reports whether the server at adminURL refuses a wrong
// password: it logs in as a throwaway role with one.
func ChecksPasswords(tb testing.TB, adminURL string) bool {
	tb.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatalf("connect to test server: %v", err)
	}
	defer admin.Close(ctx)
	role := "envplane_probe_" + RandomSuffix(tb)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD '"+RandomSuffix(tb)+RandomSuffix(tb)+"'"); err != nil {
		tb.Fatalf("create probe role: %v", err)
	}
	defer admin.Exec(ctx, "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		tb.Fatalf("parse test server URL: %v", err)
	}
	cfg.User, cfg.Password = role, "wrong"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return true
	}
	conn.Close(ctx)
	return false
}

// StartPasswordPostgres starts a private PostgreSQL server from the
// installation's binaries (pg_config --bindir), with scram-sha-256
// authentication and fsync off, in a temporary directory, on a free
// loopback port; it stops it at cleanup and returns its admin URL (which
// holds the random admin password: never print it).
func StartPasswordPostgres(tb testing.TB) string {
	tb.Helper()
	return StartPrivatePostgres(tb).URL
}

// PrivatePostgres is a private PostgreSQL server a test started
// (StartPrivatePostgres), which it may restart.
type PrivatePostgres struct {
	// URL is the admin URL; it holds the admin password: never print it.
	URL string

	bin, dir, data string
	port           int
	cred           *syscall.Credential
	server         *exec.Cmd
	log            *os.File
}

// StartPrivatePostgres starts a private PostgreSQL server as
// StartPasswordPostgres does and returns it, for a test that stops and
// starts it again (Restart). It stops the server at cleanup.
func StartPrivatePostgres(tb testing.TB) *PrivatePostgres {
	tb.Helper()
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		missingPasswordServer(tb, "pg_config not found: %v", err)
	}
	p := &PrivatePostgres{bin: strings.TrimSpace(string(out))}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			missingPasswordServer(tb, "running as root and no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if p.dir, err = os.MkdirTemp("", "envplane-pgtest-"); err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(p.dir) })
	if p.cred != nil {
		if err := os.Chown(p.dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			tb.Fatalf("chown temp dir: %v", err)
		}
	}
	password := RandomSuffix(tb) + RandomSuffix(tb)
	pwfile := filepath.Join(p.dir, "pw")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		tb.Fatalf("write password file: %v", err)
	}
	if p.cred != nil {
		if err := os.Chown(pwfile, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			tb.Fatalf("chown password file: %v", err)
		}
	}
	p.data = filepath.Join(p.dir, "data")
	initdb := exec.Command(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres",
		"--auth=scram-sha-256", "--pwfile="+pwfile, "--no-sync", "--no-instructions", "-E", "UTF8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	p.port = freePort(tb)
	if p.log, err = os.Create(filepath.Join(p.dir, "server.log")); err != nil {
		tb.Fatalf("server log: %v", err)
	}
	tb.Cleanup(func() {
		p.stop()
		p.log.Close()
	})
	u := &url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	p.URL = u.String()
	p.start(tb)
	return p
}

// start runs the server on its data directory and port and waits until
// it accepts the admin.
func (p *PrivatePostgres) start(tb testing.TB) {
	tb.Helper()
	p.server = exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data, "-p", strconv.Itoa(p.port),
		"-k", p.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50")
	p.server.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	p.server.Stdout, p.server.Stderr = p.log, p.log
	if err := p.server.Start(); err != nil {
		tb.Fatalf("start postgres: %v", err)
	}
	waitForServer(tb, p.URL)
}

// stop shuts the server down fast (SIGINT: open transactions roll back,
// connections close) and waits for it to exit.
func (p *PrivatePostgres) stop() {
	if p.server == nil {
		return
	}
	_ = p.server.Process.Signal(syscall.SIGINT)
	_ = p.server.Wait()
	p.server = nil
}

// PID is the server's (postmaster's) process id, for a benchmark that
// measures the CPU time it and its backends spend.
func (p *PrivatePostgres) PID() int { return p.server.Process.Pid }

// Restart stops the server as `pg_ctl restart` would (fast shutdown:
// every connection is cut) and starts it again on the same port and
// data, returning once it accepts connections. down runs while the
// server is stopped.
func (p *PrivatePostgres) Restart(tb testing.TB, down func()) {
	tb.Helper()
	p.stop()
	if down != nil {
		down()
	}
	p.start(tb)
}

// waitForServer polls until the server accepts the admin, for up to 30 s.
func waitForServer(tb testing.TB, adminURL string) {
	tb.Helper()
	ctx := context.Background()
	var err error
	for range 300 {
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, adminURL); err == nil {
			conn.Close(ctx)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("private test server did not start: %v", err)
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// missingPasswordServer fails under CI=true and skips elsewhere.
func missingPasswordServer(tb testing.TB, format string, args ...any) {
	tb.Helper()
	MissingServer(tb, "the test server trusts every password and no private server can start: %s", fmt.Sprintf(format, args...))
}

// StoreDatabase creates the database db owned by a role of the same name
// (its password is its name) that is neither a superuser nor exempt from
// row-level security, and returns the URL that reaches db as that role: a
// control-plane store's least-privileged user (adr/0027). AdminURL reaches
// the same database as the server's superuser, to inspect it.
func (p *PrivatePostgres) StoreDatabase(tb testing.TB, db string) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		tb.Fatalf("connect to the private server: %v", err)
	}
	defer conn.Close(ctx)
	name := pgx.Identifier{db}.Sanitize()
	for _, stmt := range []string{
		"CREATE ROLE " + name + " LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD " + pgQuote(db),
		"CREATE DATABASE " + name + " OWNER " + name,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			tb.Fatalf("create the store database %s: %v", db, err)
		}
	}
	u, err := url.Parse(p.AdminURL(tb, db))
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.UserPassword(db, db)
	return u.String()
}

// AdminURL returns the URL of the database db for the server's superuser.
func (p *PrivatePostgres) AdminURL(tb testing.TB, db string) string {
	tb.Helper()
	u, err := url.Parse(p.URL)
	if err != nil {
		tb.Fatalf("parse the private server's URL: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}
