// Package drivers defines the contract between envplane's control plane and the
// engines that hold environment databases: a Driver turns "a database for
// environment X" into a real database and the secrets that open it.
//
// Every operation takes a context and a request struct, so fields can be added
// without breaking drivers, and every operation is idempotent: repeating it after
// a crash finishes the job rather than failing. Optional capabilities (Cloner,
// UsageReporter, HealthChecker, Suspender, WriteLimiter, Resetter, BackerUp) are small interfaces discovered by
// type assertion.
//
// Contract conditions are the sentinel errors below, checked with errors.Is. A
// driver never logs a secret and never puts one in an error.
package drivers

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"strconv"
	"time"
)

// Sentinel errors. Drivers wrap them (fmt.Errorf("...: %w", drivers.ErrNotFound))
// and callers test them with errors.Is.
var (
	// ErrNotFound reports that the database or credential does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists reports that an object of that name exists and was not made by envplane.
	ErrExists = errors.New("already exists")
	// ErrUnsupported reports that the driver cannot do what was asked (an optional capability, a scope).
	ErrUnsupported = errors.New("unsupported")
	// ErrUnavailable reports that the target cannot be reached or refused for a transient reason.
	ErrUnavailable = errors.New("target unavailable")
	// ErrDenied reports that a credential was rejected: wrong database, revoked, expired or bad secret.
	ErrDenied = errors.New("credential denied")
)

// ValidDatabaseName reports whether name has the one shape envplane
// generates: "env_" and 26 lowercase letters or digits. Drivers turn only
// such names into files, databases and roles, so no user input can reach a
// path or an identifier.
func ValidDatabaseName(name string) bool {
	const prefix = "env_"
	if len(name) != len(prefix)+26 || name[:len(prefix)] != prefix {
		return false
	}
	for _, r := range name[len(prefix):] {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// Scope is what a credential may do inside its database.
type Scope string

// The three scopes, from most to least powerful.
const (
	ScopeAdmin     Scope = "admin"
	ScopeReadWrite Scope = "readwrite"
	ScopeReadOnly  Scope = "readonly"
)

// Scopes lists every scope, most powerful first.
func Scopes() []Scope { return []Scope{ScopeAdmin, ScopeReadWrite, ScopeReadOnly} }

// Valid reports whether s is one of the three scopes.
func (s Scope) Valid() bool { return s.rank() > 0 }

// Covers reports whether a principal allowed up to s may use scope other.
func (s Scope) Covers(other Scope) bool { return s.rank() >= other.rank() && other.rank() > 0 }

func (s Scope) rank() int {
	switch s {
	case ScopeAdmin:
		return 3
	case ScopeReadWrite:
		return 2
	case ScopeReadOnly:
		return 1
	}
	return 0
}

// Slot is one of the two alternating credential positions of a scope. Rotation
// issues on the standby slot while the active one keeps working, so the set of
// usernames per database stays bounded (poolers keep one pool per slot).
type Slot string

// The two slots.
const (
	SlotA Slot = "a"
	SlotB Slot = "b"
)

// Other returns the standby slot for s.
func (s Slot) Other() Slot {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// Valid reports whether s is a or b.
func (s Slot) Valid() bool { return s == SlotA || s == SlotB }

// Secret holds a password, token or DSN that embeds one. It prints, logs and
// marshals as [redacted]; Reveal is the one way to read it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value. Call it only where the value leaves
// envplane on purpose: the router's response, a database connection.
func (s Secret) Reveal() string { return string(s) }

// String returns [redacted].
func (s Secret) String() string { return redacted }

// GoString returns [redacted], so %#v hides the value too.
func (s Secret) GoString() string { return redacted }

// MarshalJSON writes "[redacted]"; responses that must carry a secret copy
// Reveal() into a plain string field.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText writes [redacted] (slog's text and JSON handlers use it).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Dialect tells SQL runners (the schema initializer) how to talk to a driver's
// databases: placeholder style and whether database/sql transactions work.
type Dialect string

// The dialects envplane's drivers speak.
const (
	DialectSQLite   Dialect = "sqlite"
	DialectPostgres Dialect = "postgres"
	DialectLibSQL   Dialect = "libsql"
)

// Placeholder returns the n-th (1-based) bind parameter in d's syntax: $n for
// PostgreSQL, ? otherwise.
func (d Dialect) Placeholder(n int) string {
	if d == DialectPostgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// Database identifies one data-plane database as the control plane recorded it
// when the driver created it.
type Database struct {
	// Name is generated by envplane ("env_" + 26 lowercase characters) and never changes.
	Name string
	// URL is what CreateDatabase returned (a host name, a file path), possibly empty.
	URL string
	// Region is where the database lives.
	Region string
	// Metadata is what CreateDatabase returned, kept verbatim.
	Metadata map[string]string
}

// Credential is a secret that opens one database with one scope in one slot.
type Credential struct {
	Scope    Scope
	Slot     Slot
	Username string
	Secret   Secret
	// ExpiresAt is when the credential stops working; zero means never.
	ExpiresAt time.Time
}

// CreateDatabaseRequest asks for a database.
type CreateDatabaseRequest struct {
	// Name is the generated database name; drivers must not accept names from user input.
	Name string
	// Region is a hint for drivers with placement (Turso locations).
	Region string
	// StorageLimitMB is 0 for no limit.
	StorageLimitMB int
}

// CreateDatabaseResponse describes the database that now exists.
type CreateDatabaseResponse struct {
	Database Database
}

// DropDatabaseRequest asks for a database to go away, with every credential of it.
type DropDatabaseRequest struct {
	Database Database
}

// DropDatabaseResponse is empty today.
type DropDatabaseResponse struct{}

// IssueCredentialRequest asks for a working credential for a scope in a slot.
type IssueCredentialRequest struct {
	Database Database
	Scope    Scope
	Slot     Slot
	// ExpiresAt bounds the credential's life (PostgreSQL VALID UNTIL, Turso
	// token expiration); zero means no expiry.
	ExpiresAt time.Time
}

// IssueCredentialResponse carries the new secret.
type IssueCredentialResponse struct {
	Credential Credential
}

// RevokeCredentialRequest asks for a credential to stop working at once.
type RevokeCredentialRequest struct {
	Database Database
	Scope    Scope
	Slot     Slot
	Username string
}

// RevokeCredentialResponse is empty today.
type RevokeCredentialResponse struct{}

// OpenRequest asks for a connection pool that uses a credential.
type OpenRequest struct {
	Database   Database
	Credential Credential
}

// OpenResponse is an open pool. The caller closes DB.
type OpenResponse struct {
	DB      *sql.DB
	Dialect Dialect
}

// DescriptorRequest asks for what an application needs to connect.
type DescriptorRequest struct {
	Database   Database
	Credential Credential
}

// Descriptor is what the router hands to applications.
type Descriptor struct {
	// DSN is the complete connection string, secret included.
	DSN Secret
	// URL is the DSN without its secret, safe to show.
	URL      string
	Host     string
	Port     int
	Database string
	Username string
	Params   map[string]string
}

// Driver creates databases and the credentials that open them. Every method is
// idempotent and returns errors wrapping the sentinels above.
type Driver interface {
	// Name returns the driver's name: "sqlite", "postgres", "turso".
	Name() string

	// CreateDatabase creates the named database. An existing database of that
	// name made by envplane is success; one not made by envplane is ErrExists.
	CreateDatabase(ctx context.Context, req CreateDatabaseRequest) (CreateDatabaseResponse, error)

	// DropDatabase drops the database and every credential of it. Absent is success.
	DropDatabase(ctx context.Context, req DropDatabaseRequest) (DropDatabaseResponse, error)

	// IssueCredential makes a working credential for the scope in the slot,
	// replacing whatever secret the slot had. ErrNotFound if the database is absent.
	IssueCredential(ctx context.Context, req IssueCredentialRequest) (IssueCredentialResponse, error)

	// RevokeCredential makes the credential stop working at once and ends its
	// sessions where the engine has any. Absent is success.
	RevokeCredential(ctx context.Context, req RevokeCredentialRequest) (RevokeCredentialResponse, error)

	// Open returns a pool that connects with the credential, after checking
	// that the credential works (ErrDenied otherwise).
	Open(ctx context.Context, req OpenRequest) (OpenResponse, error)

	// Descriptor builds the connection descriptor for applications. It does no I/O.
	Descriptor(ctx context.Context, req DescriptorRequest) (Descriptor, error)
}

// CloneDatabaseRequest asks for a new database made from another one.
type CloneDatabaseRequest struct {
	Name   string
	Region string
	Source Database
	// SchemaOnly copies structure without rows.
	SchemaOnly bool
}

// Cloner is implemented by drivers that can create a database from another one.
type Cloner interface {
	// CloneDatabase creates req.Name from req.Source. Idempotent like CreateDatabase.
	CloneDatabase(ctx context.Context, req CloneDatabaseRequest) (CreateDatabaseResponse, error)
}

// Usage is how much a database holds, as far as its engine tells.
type Usage struct {
	SizeBytes int64
	// Tables counts the application's tables (envplane's _envplane_*
	// tables and the engine's catalogs excepted); nil when the engine
	// does not tell (Turso's Platform API reports storage only).
	Tables *int64
	// Connections counts the sessions open on the database, the
	// measuring one excepted; nil when the engine has no such notion
	// (SQLite) or does not tell (Turso).
	Connections *int64
}

// UsageReporter is implemented by drivers that can measure a database.
type UsageReporter interface {
	// Usage returns the database's size and, where the engine tells, its
	// tables and connections. ErrNotFound if absent.
	Usage(ctx context.Context, db Database) (Usage, error)
}

// LimitWritesRequest asks for the readwrite scope of a database to lose, or
// get back, its right to write.
type LimitWritesRequest struct {
	Database Database
	// Limited true takes the write rights away; false gives them back.
	Limited bool
}

// WriteLimiter is implemented by drivers whose engine can refuse writes to
// one scope while reads go on (PostgreSQL): the control plane uses it on
// databases over their storage limit. LimitWrites is idempotent and takes
// effect for open sessions too. ErrNotFound if the database is absent.
type WriteLimiter interface {
	LimitWrites(ctx context.Context, req LimitWritesRequest) error
}

// HealthChecker is implemented by drivers that can tell whether their target answers.
type HealthChecker interface {
	// Health returns nil when the target is reachable, an error wrapping ErrUnavailable otherwise.
	Health(ctx context.Context) error
}

// SuspendDatabaseRequest asks for every credential of a database to stop
// working until ResumeDatabase.
type SuspendDatabaseRequest struct {
	Database Database
}

// SuspendDatabaseResponse says what the suspension did to the credentials.
type SuspendDatabaseResponse struct {
	// CredentialsRevoked is true when the engine cannot keep credentials
	// for later and destroyed them all (Turso invalidates every token of
	// the database): the caller records them revoked and issues new ones
	// after ResumeDatabase.
	CredentialsRevoked bool
}

// ResumeDatabaseRequest asks for a suspended database's credentials to work again.
type ResumeDatabaseRequest struct {
	Database Database
	// Credentials are the ones to restore, by scope, slot and username (no
	// secret is needed): the caller's live credentials. Any other stays refused.
	Credentials []Credential
}

// ResumeDatabaseResponse is empty today.
type ResumeDatabaseResponse struct{}

// Suspender is implemented by drivers that can cut a database's access where
// the data lives, not only at the router. Both methods are idempotent, so an
// operation retried after a crash converges.
type Suspender interface {
	// SuspendDatabase makes every credential of the database stop working
	// and ends their sessions where the engine has any. A credential
	// issued afterwards may work (PostgreSQL's IssueCredential enables its
	// role's login, a Turso token minted later is valid): a caller that
	// issues while suspended suspends again. Absent is success.
	SuspendDatabase(ctx context.Context, req SuspendDatabaseRequest) (SuspendDatabaseResponse, error)

	// ResumeDatabase makes req.Credentials work again, with the secrets
	// they had, unless SuspendDatabase said it revoked them. ErrNotFound
	// if the database is absent.
	ResumeDatabase(ctx context.Context, req ResumeDatabaseRequest) (ResumeDatabaseResponse, error)
}

// ResetRequest names the database whose contents a reset replaces and what
// replaces them. The database keeps its name, its credentials and its DSN.
type ResetRequest struct {
	Database Database
	// Source is copied, rows included, into the replacement; nil stages an
	// empty database (the caller applies the schema to it).
	Source *Database
	// Admin is an active admin-scope credential of Database. Engines whose
	// contents are replaced over the data-plane protocol (libSQL) need it;
	// the others ignore it.
	Admin Credential
}

// Resetter is implemented by drivers that can replace a database's contents
// while its name, credentials and DSN stay as they are (adr/0020). A reset
// is staged beside the database, adopted by the caller (the schema
// initializer runs on it through OpenStaged), then swapped in; until
// SwapReset the database is untouched, and once it returns the database
// holds the replacement. Every method is idempotent, so a reset interrupted
// anywhere is repeated or discarded and converges to the old contents or
// the new, never a mix.
type Resetter interface {
	// StageReset builds the replacement beside the database: a copy of
	// req.Source or an empty database. Whatever an earlier attempt staged
	// is discarded first, so a retry starts over. ErrNotFound if the
	// database or the source is absent.
	StageReset(ctx context.Context, req ResetRequest) error

	// OpenStaged opens the staged replacement with req.Credential, a
	// credential of req.Database that will open the database after the
	// swap. ErrNotFound if nothing is staged.
	OpenStaged(ctx context.Context, req OpenRequest) (OpenResponse, error)

	// SwapReset puts the staged replacement in place of the database, in
	// one step that sessions see whole. Sessions open on the database may
	// be ended; their credentials work on the replacement. With nothing
	// staged it does nothing and succeeds: the swap is done.
	SwapReset(ctx context.Context, req ResetRequest) error

	// DiscardReset removes what a reset leaves beside the database (the
	// staged replacement, the old contents kept until the swap was
	// through) and gives the database back its access if a swap stopped
	// half-way took it. Absent is success.
	DiscardReset(ctx context.Context, req ResetRequest) error
}

// BackupRequest asks for a consistent copy of a database, written to W.
type BackupRequest struct {
	Database Database
	// W receives the copy as the engine's own format (a SQLite file,
	// pg_dump's custom format, Turso's libsql-dump SQL text); the driver
	// neither buffers it whole nor closes W (Turso's libSQL client holds
	// the one batch's answer it is written from, adr/0021).
	W io.Writer
}

// BackupResponse describes the copy written.
type BackupResponse struct {
	// Format names the copy's format ("sqlite3", "pg_dump-custom",
	// "libsql-dump"), so a restore can refuse a copy that another driver
	// made.
	Format string
	// Tables counts the rows of every table in the copy (the engine's
	// catalogs excepted), read in the copy's own snapshot, so a restore
	// can be checked against it.
	Tables map[string]int64
}

// RestoreRequest asks for a new database made from a copy BackupDatabase wrote.
type RestoreRequest struct {
	// Name is the new database's generated name.
	Name   string
	Region string
	// Format is what BackupDatabase answered for the copy.
	Format string
	// R is read to its end; an error from R fails the restore.
	R io.Reader
}

// BackerUp is implemented by drivers that can copy a database out and make
// a new database from such a copy.
type BackerUp interface {
	// BackupDatabase writes a consistent copy of the database to req.W
	// while the database stays in use. ErrNotFound if it is absent. It
	// changes nothing, so it may be repeated.
	BackupDatabase(ctx context.Context, req BackupRequest) (BackupResponse, error)
	// RestoreDatabase creates req.Name from the copy in req.R, with its own
	// roles and no credential of the copied database, like CloneDatabase.
	// The database appears complete or not at all: a restore that fails
	// half-way leaves nothing that opens (DropDatabase removes any
	// leftover). A database of that name that an earlier call completed is
	// success (req.R is then not read); ErrUnsupported for a format the
	// driver did not write.
	RestoreDatabase(ctx context.Context, req RestoreRequest) (CreateDatabaseResponse, error)
}

// RestoreAtRequest asks for a new database made from another one as it was
// at a point in time.
type RestoreAtRequest struct {
	Name   string
	Region string
	Source Database
	At     time.Time
}

// PointInTimeRestorer is implemented by drivers whose engine keeps a
// database's history (Turso: a seed with a timestamp).
type PointInTimeRestorer interface {
	// RestoreDatabaseAt creates req.Name from req.Source as it was at
	// req.At, with its own credentials, like CloneDatabase. ErrNotFound if
	// the source is absent; ErrUnsupported when req.At is outside the
	// engine's recovery window (RecoveryWindow back from now). Idempotent
	// like CreateDatabase.
	RestoreDatabaseAt(ctx context.Context, req RestoreAtRequest) (CreateDatabaseResponse, error)
	// RecoveryWindow is how far back RestoreDatabaseAt can go.
	RecoveryWindow() time.Duration
}
