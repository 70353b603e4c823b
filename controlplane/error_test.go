package controlplane

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestUnreachableIsUnavailable: a failure to reach a server (a refused
// dial, a dropped connection, PostgreSQL shutting down or starting up) is
// EUNAVAILABLE with a fixed message that carries nothing of the cause;
// any other unclassified error stays internal, and an *Error keeps its own
// code.
func TestUnreachableIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, refused := net.Dial("tcp", addr)
	if refused == nil {
		t.Fatal("a dial to a closed port succeeded")
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"refused dial", fmt.Errorf("cannot begin transaction: %w", refused), EUNAVAILABLE},
		{"bad connection", fmt.Errorf("cannot read: %w", driver.ErrBadConn), EUNAVAILABLE},
		{"admin shutdown", fmt.Errorf("cannot read: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), EUNAVAILABLE},
		{"starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, EUNAVAILABLE},
		{"connection failure", &pgconn.PgError{Code: "08006"}, EUNAVAILABLE},
		{"syntax error", fmt.Errorf("cannot read: %w", &pgconn.PgError{Code: "42601", Message: "syntax error"}), EINTERNAL},
		{"plain error", errors.New("boom"), EINTERNAL},
		{"classified", &Error{Code: ECONFLICT, Message: "taken", Err: refused}, ECONFLICT},
	}
	for _, c := range cases {
		if got := ErrorCode(c.err); got != c.want {
			t.Errorf("%s: code %q, want %q", c.name, got, c.want)
		}
		msg := ErrorMessage(c.err)
		switch c.want {
		case EUNAVAILABLE:
			if msg != storeUnreachable {
				t.Errorf("%s: message %q", c.name, msg)
			}
		case EINTERNAL:
			if msg != "internal error" {
				t.Errorf("%s: message %q, want internal error", c.name, msg)
			}
		}
	}
}
