package postgres_test

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/envplane/envplane/drivers/drivertest"
)

// The conformance suite runs on the shared test server. When that server
// trusts every login (pg_hba trust), the properties that need the server to
// compare secrets (wrong, replaced or expired secrets refused) run again on a
// private server that checks passwords.
func TestConformance(t *testing.T) {
	shared := serverURL(t)
	checks := drivertest.ChecksPasswords(t, shared)
	t.Run("SharedServer", func(t *testing.T) { conformance(t, shared, checks) })
	if !checks {
		t.Run("PasswordServer", func(t *testing.T) { conformance(t, drivertest.StartPasswordPostgres(t), true) })
	}
}

func conformance(t *testing.T, adminURL string, checksSecrets bool) {
	f := newFixture(t, adminURL)
	drivertest.Run(t, drivertest.Harness{
		Driver:               f.driver,
		OpenDSN:              func(dsn string) (*sql.DB, error) { return sql.Open("pgx", dsn) },
		ChecksSecrets:        checksSecrets,
		EnforcesOwnership:    true,
		EnforcesExpiry:       checksSecrets,
		EndsSessionsOnRevoke: true,
		BacksUp:              true,
	})
}
