package tursotest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers/drivertest"
)

// TursodbEnv names the variable that points tests at a tursodb binary. Without
// it they use the one .ci/install-tursodb links at <repo>/.tools/bin/tursodb.
const TursodbEnv = "ENVPLANE_TURSODB"

// TursodbBinary returns the path of the tursodb binary, or stops the test with
// drivertest.MissingServer (a failure under CI=true, a skip elsewhere).
func TursodbBinary(tb testing.TB) string {
	tb.Helper()
	path := os.Getenv(TursodbEnv)
	if path == "" {
		path = filepath.Join(RepoRoot(tb), ".tools", "bin", "tursodb")
	}
	info, err := os.Stat(path)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		drivertest.MissingServer(tb, "tursodb at %s (run .ci/install-tursodb or set %s)", path, TursodbEnv)
	}
	return path
}

// Tursodb is one running `tursodb FILE --sync-server ADDR`: a real libSQL
// server that speaks Hrana over HTTP (execute and batch, no interactive
// transactions) for one database file, and checks no tokens.
type Tursodb struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Path is the database file.
	Path string

	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	log  *lockedBuffer
}

// StartTursodb starts tursodb on path, listening on a free loopback port,
// waits until it answers a query, and stops it when the test ends.
func StartTursodb(tb testing.TB, path string) *Tursodb {
	tb.Helper()
	s, err := startTursodb(TursodbBinary(tb), path)
	if err != nil {
		tb.Fatalf("start tursodb: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// startTursodb tries a few ports, since the free port it picks can be taken
// between closing the probe listener and tursodb binding it.
func startTursodb(binary, path string) (*Tursodb, error) {
	var last error
	for range 3 {
		s, err := tryStartTursodb(binary, path)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func tryStartTursodb(binary, path string) (*Tursodb, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &Tursodb{URL: "http://" + addr, Path: path, done: make(chan struct{}), log: &lockedBuffer{}}
	s.cmd = exec.Command(binary, path, "--sync-server", addr)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w; output: %s", err, s.log.String())
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls until the server runs a query, the process exits, or the
// deadline passes. The deadline only bounds a broken start; nothing asserts speed.
func (s *Tursodb) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			return fmt.Errorf("tursodb exited before answering")
		default:
		}
		if err := ping(client, s.URL); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("tursodb did not answer within %s: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(client *http.Client, base string) error {
	body := strings.NewReader(`{"requests":[{"type":"execute","stmt":{"sql":"SELECT 1"}}]}`)
	resp, err := client.Post(base+"/v2/pipeline", "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("tursodb answered %s", resp.Status)
	}
	return nil
}

// Stop kills the server and waits for it to exit. Idempotent.
func (s *Tursodb) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	})
}

// lockedBuffer collects a process's output; exec writes from its own goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
