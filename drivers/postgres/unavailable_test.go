package postgres_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/postgres"
)

// A target that refuses connections answers ErrUnavailable from every
// operation that needs it, so callers retry rather than give up.
func TestRefusedConnectionIsUnavailable(t *testing.T) {
	// A port that was free a moment ago: nothing listens on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d, err := postgres.New(context.Background(), postgres.Config{
		AdminURL:   drivers.Secret("postgres://admin:s3cret-admin@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable&connect_timeout=2"),
		AppSSLMode: "disable",
	})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(d.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db := drivers.Database{Name: "env_0123456789abcdefghjkmnpqrs"}
	cred := drivers.Credential{Scope: drivers.ScopeReadOnly, Slot: drivers.SlotA, Secret: "s3cret-app"}
	_, createErr := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: db.Name})
	_, issueErr := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: db, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
	_, openErr := d.Open(ctx, drivers.OpenRequest{Database: db, Credential: cred})
	for what, err := range map[string]error{
		"health": d.Health(ctx),
		"create": createErr,
		"issue":  issueErr,
		"open":   openErr,
	} {
		if !errors.Is(err, drivers.ErrUnavailable) {
			t.Errorf("%s against a closed port: %v, want ErrUnavailable", what, err)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret-admin") || strings.Contains(err.Error(), "s3cret-app")) {
			t.Errorf("%s: the error carries a password", what)
		}
	}
}
