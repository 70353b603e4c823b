// Package tursotest gives tests of the Turso driver real things to talk to: a
// Turso Platform API double that holds every request it receives and every
// response it sends to the published OpenAPI contract, and real libSQL servers
// (tursodb --sync-server) behind a token-checking edge, one per database.
package tursotest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// ContractsDirEnv overrides where the shared contracts live; by default they
// are in ../shared/contracts next to the repository root.
const ContractsDirEnv = "ENVPLANE_CONTRACTS_DIR"

// ContractFile is the Turso Platform API's OpenAPI document inside the contracts directory.
const ContractFile = "turso-platform-openapi.json"

// RepoRoot returns the directory holding go.mod, found by walking up from the
// working directory (a package's directory under go test). It fails tb when
// there is none.
func RepoRoot(tb testing.TB) string {
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

// ContractPath returns the path of the Turso Platform API contract. When it is
// missing the test fails under CI=true, since CI must hold the driver to the
// contract, and is skipped elsewhere.
func ContractPath(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv(ContractsDirEnv)
	if dir == "" {
		dir = filepath.Join(RepoRoot(tb), "..", "shared", "contracts")
	}
	path := filepath.Join(dir, ContractFile)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("Turso Platform API contract missing (CI=true): %v", err)
		}
		tb.Skipf("Turso Platform API contract missing (set %s): %v", ContractsDirEnv, err)
	}
	return path
}

// contract is a router over the loaded OpenAPI document's operations.
type contract struct {
	router routers.Router
}

func loadContract(path string) (*contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot load %s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", path, err)
	}
	if len(doc.Servers) == 0 {
		return nil, errors.New("the contract names no server")
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("cannot route %s: %w", path, err)
	}
	return &contract{router: router}, nil
}
