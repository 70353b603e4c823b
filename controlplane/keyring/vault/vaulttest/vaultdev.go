// Package vaulttest runs a real HashiCorp Vault server for tests: vaultdev
// (tools/vaultdev), Vault's own core in dev mode with in-memory storage,
// initialised and unsealed, with the Transit engine mounted at transit/.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// BinaryEnv names the variable that points tests at a vaultdev binary. Without
// it they use the one .ci/install-vaultdev builds at <repo>/.tools/bin/vaultdev.
const BinaryEnv = "ENVPLANE_TEST_VAULTDEV"

// Binary returns the path of the vaultdev binary, or stops the test with
// drivertest.MissingServer (a failure under CI=true, a skip elsewhere).
func Binary(tb testing.TB) string {
	tb.Helper()
	path := os.Getenv(BinaryEnv)
	if path == "" {
		path = filepath.Join(repoRoot(tb), ".tools", "bin", "vaultdev")
	}
	info, err := os.Stat(path)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		drivertest.MissingServer(tb, "vaultdev at %s (run .ci/install-vaultdev or set %s)", path, BinaryEnv)
	}
	return path
}

// Start starts a Vault dev server of its own for the test on a free loopback
// port, with a random root token and Transit mounted at transit/, waits until
// it answers /v1/sys/health, and stops it when the test ends. It returns the
// server's address (http://127.0.0.1:PORT) and the root token. Failure
// messages and logs never show the token.
func Start(tb testing.TB) (addr, token string) {
	tb.Helper()
	s := StartWith(tb, Options{})
	return s.URL, s.Token
}

// Options choose what Start otherwise picks.
type Options struct {
	// Addr is the loopback host:port to listen on, such as a port a test
	// picked before building a keyring for it; a free port when empty.
	Addr string
	// RootToken is the root token; a random one (NewRootToken) when empty.
	RootToken string
}

// NewRootToken returns a random root token for Options.RootToken.
func NewRootToken() string { return "envplane-test-" + randomHex(16) }

// StartWith is StartServer with the listen address or root token chosen by
// the caller. With an Addr, it does not try other ports: the test fails if
// the address cannot be bound.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	binary := Binary(tb)
	token := opts.RootToken
	if token == "" {
		token = NewRootToken()
	}
	var s *server
	var err error
	if opts.Addr != "" {
		s, err = tryStart(binary, token, opts.Addr)
	} else {
		s, err = start(binary, token)
	}
	if err != nil {
		tb.Fatalf("start vaultdev: %s", redact(err.Error(), token))
	}
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("vaultdev output:\n%s", redact(s.log.String(), token))
		}
	})
	return &Server{URL: s.url, Token: token, s: s}
}

// Seal seals Vault: it keeps answering, 503 "Vault is sealed", until the
// test ends (dev mode keeps no unseal key).
func (v *Server) Seal(tb testing.TB) {
	tb.Helper()
	v.post(tb, "/v1/sys/seal", map[string]any{}, nil)
}

type server struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	log  *lockedBuffer
}

// start tries a few ports, since the free port it picks can be taken between
// closing the probe listener and vaultdev binding it.
func start(binary, token string) (*server, error) {
	var last error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := tryStart(binary, token, "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func tryStart(binary, token, addr string) (*server, error) {
	s := &server{url: "http://" + addr, done: make(chan struct{}), log: &lockedBuffer{}}
	s.cmd = exec.Command(binary, "-addr", addr, "-root-token", token, "-mount-transit", "-log-level", "warn")
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
		s.stop()
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

// waitReady polls /v1/sys/health until it answers 200 (initialised, unsealed,
// active), the process exits, or the deadline passes. The deadline only
// bounds a broken start; nothing asserts speed.
func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			return fmt.Errorf("vaultdev exited before answering")
		default:
		}
		err := health(client, s.url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vaultdev did not answer within %s: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func health(client *http.Client, base string) error {
	resp, err := client.Get(base + "/v1/sys/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vaultdev health answered %s", resp.Status)
	}
	return nil
}

// stop asks vaultdev to shut down, kills it if it has not exited after a few
// seconds, and waits for it to exit. Idempotent.
func (s *server) stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
			return
		case <-time.After(5 * time.Second):
		}
		_ = s.cmd.Process.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	})
}

// repoRoot returns the nearest directory above the working directory that
// holds a go.mod: the repository root for every package of the main module.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // cannot fail since Go 1.24: it aborts the program instead
	return hex.EncodeToString(b)
}

// redact hides the root token, which vaultdev prints when it starts.
func redact(s, token string) string {
	return strings.ReplaceAll(s, token, "[redacted]")
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
