package turso_test

import (
	"database/sql"
	"testing"

	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// newDriver returns a Turso driver pointed at a fresh Platform double whose
// databases are real tursodb servers behind the double's token-checking edge.
func newDriver(tb testing.TB, opts tursotest.PlatformOptions) (*turso.Driver, *tursotest.Platform) {
	tb.Helper()
	p := tursotest.NewPlatform(tb, opts)
	d, err := turso.New(turso.Config{
		Organization: p.Organization,
		Group:        p.Group,
		Location:     p.Location,
		BaseURL:      p.URL,
		Token:        p.Token,
		DatabaseURL:  p.DatabaseURL,
		Now:          opts.Now,
	})
	if err != nil {
		tb.Fatalf("new driver: %v", err)
	}
	return d, p
}

// TestConformance runs the driver conformance suite against the Platform
// double and real tursodb servers.
//
// Where each property is enforced: the data itself (tables, rows, read-only
// refusals) is real libSQL in tursodb. Token checks are what Turso enforces
// server-side and tursodb does not, so they are the double's edge's: a token of
// A at B, an invalidated (revoked) token, an expired token and a forged token
// are refused there, and a read-only token's requests run under tursodb's
// query_only mode so tursodb itself refuses the writes.
//
// The flags say what Turso can and cannot do: ChecksSecrets is false because a
// re-issued slot's previous token keeps working until it expires (Turso cannot
// revoke one token; forged tokens are refused, see TestForgedTokenIsDenied);
// EnforcesOwnership is false because admin and readwrite are both full-access
// tokens; RevokeInvalidatesAllSlots is true because revoking one token
// invalidates every token of the database (adr/0005).
func TestConformance(t *testing.T) {
	d, p := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	drivertest.Run(t, drivertest.Harness{
		Driver:               d,
		OpenDSN:              func(dsn string) (*sql.DB, error) { return sql.Open("libsql", dsn) },
		Region:               p.Location,
		ChecksSecrets:        false,
		EnforcesOwnership:    false,
		EnforcesExpiry:       true,
		EndsSessionsOnRevoke: true,

		RevokeInvalidatesAllSlots: true,
		BacksUp:                   true,
	})
}
