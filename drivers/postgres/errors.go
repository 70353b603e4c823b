package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/drivers"
)

// sentinel maps an error from pgx to the contract's sentinel, or nil when
// none applies. Decisions rest on SQLSTATE codes and typed errors, never on
// message text.
func sentinel(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "28P01", pe.Code == "28000":
			// Bad password, NOLOGIN or expired role.
			return drivers.ErrDenied
		case pe.Code == "3D000", pe.Code == "42704":
			// No such database, no such role.
			return drivers.ErrNotFound
		case strings.HasPrefix(pe.Code, "08"), pe.Code == "53300",
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
			// Connection failures, too many connections, shutdown, starting up.
			return drivers.ErrUnavailable
		}
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return drivers.ErrNotFound
	}
	// A pooled connection the server (or the network) cut reads EOF.
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || pgconn.Timeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return drivers.ErrUnavailable
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return drivers.ErrUnavailable
	}
	return nil
}

// wrap gives err a short context and, where one applies, the sentinel, so
// callers can use errors.Is. It must not be used for statements that carry a
// secret: see secretError.
func wrap(what string, err error) error {
	if s := sentinel(err); s != nil && !errors.Is(err, s) {
		return fmt.Errorf("postgres: %s: %w: %w", what, s, err)
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// secretError reports the failure of a statement that carried a password
// verifier. It keeps only the SQLSTATE and the sentinel: a server message
// such as a syntax error can quote the statement, so none is passed on.
func secretError(what string, err error) error {
	code := "none"
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		code = pe.Code
	}
	if s := sentinel(err); s != nil {
		return fmt.Errorf("postgres: %s (SQLSTATE %s): %w", what, code, s)
	}
	return fmt.Errorf("postgres: %s (SQLSTATE %s)", what, code)
}
