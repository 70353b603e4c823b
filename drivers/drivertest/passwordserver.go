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
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		missingPasswordServer(tb, "pg_config not found: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			missingPasswordServer(tb, "running as root and no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "envplane-pgtest-")
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("chown temp dir: %v", err)
		}
	}
	password := RandomSuffix(tb) + RandomSuffix(tb)
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		tb.Fatalf("write password file: %v", err)
	}
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("chown password file: %v", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=scram-sha-256", "--pwfile="+pwfile, "--no-sync", "--no-instructions", "-E", "UTF8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(tb)
	server := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50")
	server.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		tb.Fatalf("server log: %v", err)
	}
	server.Stdout, server.Stderr = logFile, logFile
	if err := server.Start(); err != nil {
		tb.Fatalf("start postgres: %v", err)
	}
	tb.Cleanup(func() {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = server.Process.Signal(syscall.SIGINT)
		_ = server.Wait()
		logFile.Close()
	})
	u := &url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	waitForServer(tb, u.String())
	return u.String()
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
