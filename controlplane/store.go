package controlplane

import (
	"context"
	"strings"
	"time"
)

// Page asks for one page of a list. Lists are ordered by id (ids sort by
// creation time), oldest first unless a method says otherwise; Cursor is the
// Next of the previous page.
type Page struct {
	Limit  int
	Cursor string
}

// Check returns EMALFORMED naming the cursor when it cannot be the Next of
// a page: every list is ordered by id, so a cursor is an id (NewID's shape:
// a lowercase prefix, an underscore, lowercase letters and digits). Anything
// else was not given out by this API, and is refused rather than read as a
// position. It returns nil for the first page (no cursor).
func (p Page) Check() error {
	if p.Cursor == "" || validCursor(p.Cursor) {
		return nil
	}
	return &Error{Code: EMALFORMED, Message: "cursor: is not a cursor this API gave out", Fields: []FieldError{{Field: "cursor", Message: "is not a cursor this API gave out"}}}
}

// validCursor reports whether c has an id's shape: 1 to 16 letters a-z, "_",
// then 1 to 64 letters a-z or digits.
func validCursor(c string) bool {
	prefix, rest, ok := strings.Cut(c, "_")
	if !ok || len(prefix) < 1 || len(prefix) > 16 || len(rest) < 1 || len(rest) > 64 {
		return false
	}
	for i := range len(prefix) {
		if prefix[i] < 'a' || prefix[i] > 'z' {
			return false
		}
	}
	for i := range len(rest) {
		if (rest[i] < 'a' || rest[i] > 'z') && (rest[i] < '0' || rest[i] > '9') {
			return false
		}
	}
	return true
}

// DefaultPageLimit is used when Page.Limit is 0; MaxPageLimit caps it.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// PageLimit returns the number of rows a page of limit n holds: n, or
// DefaultPageLimit when n is 0 or less, capped at MaxPageLimit. Both stores
// apply it.
func PageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultPageLimit
	case n > MaxPageLimit:
		return MaxPageLimit
	}
	return n
}

// ResourceKind names the org-owned rows whose organization can be looked up
// from an id alone (for routes that carry no organization).
type ResourceKind string

// Kinds for Store.OrgOf.
const (
	KindEnvironment ResourceKind = "environment"
	KindOperation   ResourceKind = "operation"
)

// EnvironmentFilter selects environments of one organization.
type EnvironmentFilter struct {
	// OrgID is required: an empty one is EINVALID.
	OrgID string
	// IDs restricts the list to these environments; nil means all of the org's.
	IDs []string
	// IncludeDeleted includes tombstones.
	IncludeDeleted bool
	// Type, Status and Target, when set, keep only environments with that
	// type, status or target.
	Type   EnvironmentType
	Status EnvironmentStatus
	Target string
}

// OperationFilter selects operations of one organization.
type OperationFilter struct {
	// OrgID is required: an empty one is EINVALID.
	OrgID string
	// EnvironmentIDs restricts the list to these environments' operations;
	// nil means all of the org's.
	EnvironmentIDs []string
	// Status and Kind, when set, keep only operations with that status or kind.
	Status OperationStatus
	Kind   OperationKind
}

// CredentialFilter selects credentials of one database.
type CredentialFilter struct {
	DatabaseID string
	// Scope, if set, restricts to one scope.
	Scope Scope
	// Statuses, if set, restricts to these statuses.
	Statuses []CredentialStatus
	// IssuedSince, if not zero, restricts to credentials issued at or after it.
	IssuedSince time.Time
}

// RouteQuery names what one resolve reads from the store in one round trip.
type RouteQuery struct {
	// OrgRef is the organization's id or slug. Empty means the environment
	// is named by id alone, in whatever organization holds it.
	OrgRef string
	// EnvRef is the environment's id or slug within the organization, or
	// its id when OrgRef is empty.
	EnvRef string
	// Scope selects the credential: the newest active one of that scope.
	Scope Scope
	// UserID, when set, fills in that user's organization and environment roles.
	UserID string
}

// Route is everything a resolve needs, read at once: the organization, the
// live environment, its database and newest active credential of the scope,
// and the user's roles.
type Route struct {
	Org         *Organization
	Environment *Environment
	// Database is nil while the environment has none.
	Database *Database
	// Credential is the newest active credential of the scope (ciphers
	// included); nil when there is none.
	Credential *Credential
	// OrgRole and EnvRole are the user's roles; empty when the query named
	// no user or the user has none.
	OrgRole OrgRole
	EnvRole EnvRole
}

// Change records that something the router's answers depend on changed in
// an organization (a credential rotated or revoked, an environment
// suspended, a role or key changed), so every replica drops what it cached
// for that organization. An empty OrgID means everything.
type Change struct {
	// Seq orders changes: a reader that saw Seq n has seen every change
	// below n that will ever commit. The store assigns it.
	Seq       int64
	OrgID     string
	Reason    string
	CreatedAt time.Time
}

// Receipt records resolutions of one environment's credential by one API
// key on one replica within one minute: the router's answer to "who could
// reach this database with which credential".
type Receipt struct {
	ID            string `json:"id"`
	OrgID         string `json:"organization_id"`
	EnvironmentID string `json:"environment_id"`
	// KeyID is the API key that resolved; UserID its user, empty for app keys.
	KeyID        string `json:"key_id"`
	UserID       string `json:"user_id,omitempty"`
	Scope        Scope  `json:"scope"`
	CredentialID string `json:"credential_id"`
	// KeyVersion is the keyring key version the credential was sealed under.
	KeyVersion string `json:"key_version"`
	// Replica names the control-plane replica that answered.
	Replica string `json:"replica"`
	// FirstAt and LastAt bound the resolutions counted; FirstAt's minute is
	// the receipt's bucket.
	FirstAt time.Time `json:"first_at"`
	LastAt  time.Time `json:"last_at"`
	Count   int64     `json:"count"`
}

// ReceiptFilter selects receipts of one environment.
type ReceiptFilter struct {
	// OrgID and EnvironmentID are required.
	OrgID, EnvironmentID string
	// Since keeps receipts whose last resolution is at or after it; Until
	// those whose first is at or before it. Zero means unbounded.
	Since, Until time.Time
	// CredentialID, if set, keeps that credential's receipts.
	CredentialID string
}

// Store is the control plane's persistence. Every method returns *Error values
// with ENOTFOUND for absent rows and ECONFLICT for unique violations; other
// failures are wrapped as they come. Lookups of org-owned rows take the org id
// that authorization resolved, and a row of another org is ENOTFOUND. A write
// that references an absent row (an organization, user, environment, database,
// or for an environment role the user's org membership) is ENOTFOUND, and a
// value outside a fixed set (role, scope, status) is EINVALID.
//
// Times are kept in UTC at microsecond precision: the methods that write a
// value truncate its times in place, so the value equals what a later read
// returns. Empty maps and byte slices are stored as absent and read back nil.
// A limit argument, like Page.Limit, means DefaultPageLimit when 0 and is
// capped at MaxPageLimit.
//
// Implementations: store/sqlite (embedded default) and store/postgres; both
// pass store/storetest.
type Store interface {
	Queries

	// WithTx runs fn in one transaction: every write it makes commits or none
	// does. fn must use the Queries it is given, not the Store.
	WithTx(ctx context.Context, fn func(q Queries) error) error

	// Lock takes the exclusive lock named key for every control-plane
	// process sharing the store, waiting as long as ctx allows, and
	// returns its release. It is held by the process, not by a
	// transaction, and ends with the process. It orders what happens on a
	// target, where no transaction reaches: a grace's end and the issue
	// that reuses its slot.
	Lock(ctx context.Context, key string) (unlock func(), err error)

	// Ping returns nil when the store answers.
	Ping(ctx context.Context) error

	// Close releases the store's connections.
	Close() error
}

// Queries are the store's reads and writes, usable alone or inside WithTx.
type Queries interface {
	PeopleQueries

	// CreateOrganization inserts o. ECONFLICT if the slug is taken.
	CreateOrganization(ctx context.Context, o *Organization) error
	// GetOrganization finds an organization by id or slug. ENOTFOUND if absent.
	GetOrganization(ctx context.Context, idOrSlug string) (*Organization, error)
	// ListOrganizations lists organizations; ids, when not nil, restricts to those.
	ListOrganizations(ctx context.Context, ids []string, p Page) (orgs []*Organization, next string, err error)
	// UpdateOrganization saves o's name, require_2fa, max_environments, max_storage_mb and updated_at. ENOTFOUND if absent.
	UpdateOrganization(ctx context.Context, o *Organization) error
	// DeleteOrganization removes the organization and everything it owns. ENOTFOUND if absent.
	DeleteOrganization(ctx context.Context, id string) error

	// CreateUser inserts u. ECONFLICT if the email is taken.
	CreateUser(ctx context.Context, u *User) error
	// GetUser finds a user by id. ENOTFOUND if absent.
	GetUser(ctx context.Context, id string) (*User, error)
	// GetUserByEmail finds a user by email, case-insensitively. ENOTFOUND if absent.
	GetUserByEmail(ctx context.Context, email string) (*User, error)
	// ListPlatformAdmins lists users with PlatformAdmin set.
	ListPlatformAdmins(ctx context.Context) ([]*User, error)

	// PutOrgMembership inserts or updates the user's role in the organization.
	PutOrgMembership(ctx context.Context, m *OrgMembership) error
	// GetOrgMembership finds the user's membership. ENOTFOUND if the user is not a member.
	GetOrgMembership(ctx context.Context, orgID, userID string) (*OrgMembership, error)
	// ListOrgMemberships lists the organization's members.
	ListOrgMemberships(ctx context.Context, orgID string, p Page) (ms []*OrgMembership, next string, err error)
	// ListUserMemberships lists every organization the user belongs to.
	ListUserMemberships(ctx context.Context, userID string) ([]*OrgMembership, error)
	// DeleteOrgMembership removes the membership and the user's environment
	// roles in that organization. ENOTFOUND if absent.
	DeleteOrgMembership(ctx context.Context, orgID, userID string) error
	// CountOrgOwners counts the organization's owners. Inside WithTx it locks
	// them, so concurrent transactions that remove owners count in turn.
	CountOrgOwners(ctx context.Context, orgID string) (int, error)

	// CreateAPIKey inserts k. ECONFLICT if the hash exists.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// GetAPIKeyByHash finds a key by the SHA-256 hash of its token, revoked or not. ENOTFOUND if absent.
	GetAPIKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// GetAPIKey finds a key of the organization. ENOTFOUND if absent.
	GetAPIKey(ctx context.Context, orgID, id string) (*APIKey, error)
	// ListAPIKeys lists the organization's keys; userID, when set, restricts to that user's.
	ListAPIKeys(ctx context.Context, orgID, userID string, p Page) (keys []*APIKey, next string, err error)
	// RevokeAPIKey sets revoked_at. ENOTFOUND if absent; revoking twice keeps the first time.
	RevokeAPIKey(ctx context.Context, orgID, id string, at time.Time) error
	// TouchAPIKey sets last_used_at. Absent is not an error.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
	// ListPlatformKeys lists the live (not revoked) keys without an organization.
	ListPlatformKeys(ctx context.Context) ([]*APIKey, error)

	// OrgOf returns the organization that owns an environment or operation,
	// for routes that name only its id. ENOTFOUND if absent.
	OrgOf(ctx context.Context, kind ResourceKind, id string) (string, error)

	// CreateEnvironment inserts e. ECONFLICT if a live environment of the org has the slug.
	CreateEnvironment(ctx context.Context, e *Environment) error
	// GetEnvironment finds a live (not deleted) environment of the org by id or slug. ENOTFOUND if absent.
	GetEnvironment(ctx context.Context, orgID, idOrSlug string) (*Environment, error)
	// ListEnvironments lists environments.
	ListEnvironments(ctx context.Context, f EnvironmentFilter, p Page) (envs []*Environment, next string, err error)
	// UpdateEnvironment saves e's settings: name, description, is_protected,
	// metadata, expires_at, expiry_noticed_at and updated_at; never its status, which only
	// SetEnvironmentStatus changes, so a settings change and a lifecycle step
	// cannot undo each other. ENOTFOUND if absent.
	UpdateEnvironment(ctx context.Context, e *Environment) error
	// SetEnvironmentStatus saves e's status, error, updated_at and deleted_at,
	// only while the stored status is one of from (any, when from is empty).
	// ECONFLICT if the status moved on meanwhile, or if un-deleting would give
	// a live slug to two environments; ENOTFOUND if absent.
	SetEnvironmentStatus(ctx context.Context, e *Environment, from ...EnvironmentStatus) error
	// CountEnvironments counts the organization's live environments. Inside
	// WithTx it serializes with other reservations of the organization.
	CountEnvironments(ctx context.Context, orgID string) (int, error)
	// ListEnvironmentsExpiring lists, across organizations, up to limit live
	// environments not being deleted that expire at or before before,
	// soonest first; only those without an expiry notice when unnoticed.
	// Protected, default and production environments are never listed.
	ListEnvironmentsExpiring(ctx context.Context, before time.Time, unnoticed bool, limit int) ([]*Environment, error)
	// NoticeEnvironmentExpiry sets the environment's expiry_noticed_at to at
	// if it has none and still expires at expiresAt, and reports whether it
	// did: of two callers at once, exactly one gets true. ENOTFOUND never;
	// an absent environment is false.
	NoticeEnvironmentExpiry(ctx context.Context, orgID, id string, expiresAt, at time.Time) (bool, error)

	// CreateDatabase inserts d. ECONFLICT if the environment has one or the name is taken.
	CreateDatabase(ctx context.Context, d *Database) error
	// GetDatabase finds a database by id. ENOTFOUND if absent.
	GetDatabase(ctx context.Context, id string) (*Database, error)
	// GetEnvironmentDatabase finds the environment's database. ENOTFOUND if absent.
	GetEnvironmentDatabase(ctx context.Context, environmentID string) (*Database, error)
	// UpdateDatabase saves url, schema_version, provisioned_at, last_accessed_at and metadata. ENOTFOUND if absent.
	UpdateDatabase(ctx context.Context, d *Database) error
	// CountDatabasesByTarget counts databases of live environments per target.
	CountDatabasesByTarget(ctx context.Context) (map[string]int, error)
	// ListEnvironmentDatabases returns the databases of the environments
	// (with their last measurement), in any order, in one round trip;
	// environments without a database are left out. For lists: a page of
	// environments reads its databases at once, not one by one.
	ListEnvironmentDatabases(ctx context.Context, environmentIDs []string) ([]*Database, error)

	// ClaimUsageDue returns up to limit databases of active or suspended
	// environments on the named targets whose usage measurement is due at
	// now (never measured, or due since), the longest due first, and makes
	// each due again only at until, so concurrent claimers never get the
	// same database and one that is not measured is retried then.
	ClaimUsageDue(ctx context.Context, now, until time.Time, targets []string, limit int) ([]*Database, error)
	// RecordUsage saves u as the database's last measurement, truncating
	// its time. ENOTFOUND if absent.
	RecordUsage(ctx context.Context, databaseID string, u *Usage) error
	// SetOverLimit sets the database's over_limit flag to over, only while
	// it is the other way: ECONFLICT if it already is over (another
	// replica recorded the crossing); ENOTFOUND if absent.
	SetOverLimit(ctx context.Context, databaseID string, over bool) error
	// SetStorageLimit saves the database's storage_limit_mb and makes its
	// usage due at due, so the limit is applied at the next measurement.
	// ENOTFOUND if absent.
	SetStorageLimit(ctx context.Context, databaseID string, limitMB int, due time.Time) error
	// SumUsage sums the last measurements of the organization's live
	// environments per environment type, in type order; envIDs, when not
	// nil, restricts the sum to those environments.
	SumUsage(ctx context.Context, orgID string, envIDs []string) ([]*UsageTotal, error)
	// SumUsageByOrg sums the last measurements of live environments per
	// organization, for metrics, by organization slug.
	SumUsageByOrg(ctx context.Context) ([]*OrgUsageTotal, error)

	// CreateCredential inserts c.
	CreateCredential(ctx context.Context, c *Credential) error
	// CountCredentials counts the database's credentials that f selects.
	CountCredentials(ctx context.Context, f CredentialFilter) (int, error)
	// PromiseCredential records that a refresh_after up to until was handed
	// out for an active credential: it raises promised_until to until and
	// never lowers it. ECONFLICT if the credential is no longer active (a
	// rotation demoted it meanwhile); ENOTFOUND if absent. Inside WithTx on
	// PostgreSQL it waits for a transaction that changes the credential.
	PromiseCredential(ctx context.Context, databaseID, id string, until time.Time) error
	// GetCredential finds a credential of the database. ENOTFOUND if absent.
	GetCredential(ctx context.Context, databaseID, id string) (*Credential, error)
	// ListCredentials lists the database's credentials, newest first.
	ListCredentials(ctx context.Context, f CredentialFilter) ([]*Credential, error)
	// ResolveRoute reads, in one round trip, what a resolve needs (see
	// Route). ENOTFOUND if the organization or the live environment is absent.
	ResolveRoute(ctx context.Context, q RouteQuery) (*Route, error)
	// UpdateCredential saves status, expires_at and revoked_at; never the
	// ciphers, which only RewrapCredential changes. ENOTFOUND if absent.
	UpdateCredential(ctx context.Context, c *Credential) error
	// RewrapCredential replaces c's wrapped data key and key id, only while the
	// stored key id is still fromKeyID. ECONFLICT if it changed meanwhile;
	// ENOTFOUND if absent.
	RewrapCredential(ctx context.Context, c *Credential, fromKeyID string) error
	// ListCredentialsDue lists rotating credentials whose grace ended at or before now, oldest first.
	ListCredentialsDue(ctx context.Context, now time.Time, limit int) ([]*Credential, error)
	// ListCredentialsExpiring lists up to limit active credentials that expire
	// at or before before, soonest first; for scheduled rotation.
	ListCredentialsExpiring(ctx context.Context, before time.Time, limit int) ([]*Credential, error)
	// ListCredentialsByKey lists credentials (any status but revoked) whose data key is
	// wrapped under a key id other than keyID, up to limit; for re-wrapping.
	ListCredentialsByKey(ctx context.Context, notKeyID string, limit int) ([]*Credential, error)
	// CountCredentialsByKey counts non-revoked credentials per kms_key_id.
	CountCredentialsByKey(ctx context.Context) (map[string]int, error)

	// PutEnvironmentMember inserts or updates the user's role on the environment.
	// ENOTFOUND if the environment is not m.OrgID's or the user is not a member
	// of that organization.
	PutEnvironmentMember(ctx context.Context, m *EnvironmentMember) error
	// GetEnvironmentMember finds the user's role on the environment. ENOTFOUND if none.
	GetEnvironmentMember(ctx context.Context, environmentID, userID string) (*EnvironmentMember, error)
	// ListEnvironmentMembers lists the environment's members.
	ListEnvironmentMembers(ctx context.Context, environmentID string) ([]*EnvironmentMember, error)
	// ListUserEnvironmentRoles maps environment id to the user's role, for the org's environments.
	ListUserEnvironmentRoles(ctx context.Context, orgID, userID string) (map[string]EnvRole, error)
	// DeleteEnvironmentMember removes the user's role. ENOTFOUND if none.
	DeleteEnvironmentMember(ctx context.Context, environmentID, userID string) error

	// CreateOperation inserts op. ECONFLICT if the environment already has an
	// unfinished (pending or running) operation.
	CreateOperation(ctx context.Context, op *Operation) error
	// GetOperation finds an operation of the organization. ENOTFOUND if absent.
	GetOperation(ctx context.Context, orgID, id string) (*Operation, error)
	// ListOperations lists operations, newest (highest id) first; the
	// cursor is the id below which the page starts. EINVALID if f.OrgID is empty.
	ListOperations(ctx context.Context, f OperationFilter, p Page) (ops []*Operation, next string, err error)
	// GetRunningOperation finds the environment's unfinished operation, if any. ENOTFOUND if none.
	GetRunningOperation(ctx context.Context, environmentID string) (*Operation, error)
	// ClaimOperations leases up to limit unfinished operations whose lease is
	// free or expired and whose not_before has passed, to owner until until.
	// Concurrent claimers never get the same operation. The result is ordered by id.
	ClaimOperations(ctx context.Context, owner string, now, until time.Time, limit int) ([]*Operation, error)
	// UpdateOperation saves status, step, attempts, error, response,
	// not_before, lease and updated_at, only while op.LeaseOwner still holds
	// the lease (or the operation has no owner). ECONFLICT if the lease was lost.
	// A holder hands an operation back by keeping LeaseOwner and setting
	// LeaseExpiresAt to now; a finished (Done) operation is never claimed.
	UpdateOperation(ctx context.Context, op *Operation) error

	// RenewLease extends to until the lease owner holds on an unfinished
	// operation, touching nothing else (a heartbeat while a long step runs).
	// ECONFLICT if owner no longer holds it; ENOTFOUND if absent.
	RenewLease(ctx context.Context, orgID, id, owner string, until time.Time) error

	// AppendAuditEvent inserts e. Audit events are never updated or deleted.
	AppendAuditEvent(ctx context.Context, e *AuditEvent) error
	// ListAuditEvents lists the organization's events, newest first; with
	// orgID empty, the platform's own events (bootstrap, keyring).
	ListAuditEvents(ctx context.Context, orgID string, p Page) (events []*AuditEvent, next string, err error)

	// AppendChange records c and sets c.Seq. Changes commit in Seq order:
	// concurrent appenders take turns (on PostgreSQL, a counter row locked
	// until commit).
	AppendChange(ctx context.Context, c *Change) error
	// ListChanges lists up to limit changes with Seq above after, in Seq order.
	ListChanges(ctx context.Context, after int64, limit int) ([]*Change, error)
	// LastChange returns the highest Seq recorded, 0 when none.
	LastChange(ctx context.Context) (int64, error)
	// DeleteChangesBefore removes changes created before before and returns
	// how many it removed, keeping the newest so Seq never goes back.
	DeleteChangesBefore(ctx context.Context, before time.Time) (int, error)

	// RecordReceipts adds rs: a receipt of the same environment, key, scope,
	// credential, key version, replica and minute as a stored one adds its
	// Count to it and moves LastAt forward; any other is inserted with its
	// ID. ENOTFOUND if an environment is absent.
	RecordReceipts(ctx context.Context, rs []*Receipt) error
	// ListReceipts lists an environment's receipts, newest first.
	ListReceipts(ctx context.Context, f ReceiptFilter, p Page) (rs []*Receipt, next string, err error)
	// DeleteReceiptsBefore removes receipts whose last resolution is before
	// before, and returns how many it removed; for retention.
	DeleteReceiptsBefore(ctx context.Context, before time.Time) (int, error)

	// CreateIdempotencyRecord inserts r. ECONFLICT if (owner, key) exists.
	CreateIdempotencyRecord(ctx context.Context, r *IdempotencyRecord) error
	// GetIdempotencyRecord finds a record. ENOTFOUND if absent.
	GetIdempotencyRecord(ctx context.Context, owner, key string) (*IdempotencyRecord, error)
	// CompleteIdempotencyRecord stores the response. ENOTFOUND if absent.
	CompleteIdempotencyRecord(ctx context.Context, owner, key string, status int, response []byte) error
	// DeleteIdempotencyRecord removes a record (a request that failed before answering). Absent is not an error.
	DeleteIdempotencyRecord(ctx context.Context, owner, key string) error
	// DeleteIdempotencyRecordsBefore removes the records created before
	// before, answered or not, and returns how many it removed; for pruning.
	DeleteIdempotencyRecordsBefore(ctx context.Context, before time.Time) (int, error)

	// RenameDatabase saves d's database name, url and metadata: the
	// environment's database is now another one (an in-place restore).
	// ECONFLICT if the name is taken; ENOTFOUND if absent.
	RenameDatabase(ctx context.Context, d *Database) error
	// CreateBackup inserts b.
	CreateBackup(ctx context.Context, b *Backup) error
	// UpdateBackup saves status, format, size, checksum, key id, wrapped data key, schema
	// version, tables, error and completed_at. ENOTFOUND if absent.
	UpdateBackup(ctx context.Context, b *Backup) error
	// GetBackup finds a backup of the organization. ENOTFOUND if absent.
	GetBackup(ctx context.Context, orgID, id string) (*Backup, error)
	// ListBackups lists the backups f selects, newest (highest id) first.
	ListBackups(ctx context.Context, f BackupFilter, p Page) (bs []*Backup, next string, err error)
	// DeleteBackup removes a backup's row. Absent is success.
	DeleteBackup(ctx context.Context, orgID, id string) error
	// RewrapBackup replaces a completed backup's wrapped data key and key
	// id (b.DEKCipher, b.KeyID), only while its key id is still fromKeyID:
	// ECONFLICT when it changed meanwhile, ENOTFOUND when the backup is gone.
	RewrapBackup(ctx context.Context, b *Backup, fromKeyID string) error
	// ListBackupsByKey lists up to limit completed backups whose data key
	// is wrapped under a key version other than notKeyID, by id.
	ListBackupsByKey(ctx context.Context, notKeyID string, limit int) ([]*Backup, error)
	// CountBackupsByKey counts the completed backups per key id.
	CountBackupsByKey(ctx context.Context) (map[string]int, error)
	// CountRunningBackups counts the backups still running.
	CountRunningBackups(ctx context.Context) (int, error)
	// ListBackupsDue lists up to limit active environments of type t on
	// the named targets with no backup (running or completed) created
	// after since, the longest waiting first (never backed up first, by
	// id). Its cost follows the environments due, not the environments of
	// the type.
	ListBackupsDue(ctx context.Context, t EnvironmentType, targets []string, since time.Time, limit int) ([]*Environment, error)
	// RolloutQueries are the fleet rollouts' reads and writes (rollouts.go).
	RolloutQueries
}

// PeopleQueries are the store's reads and writes of sign-in, sessions and
// invitations (adr/0023).
type PeopleQueries interface {
	// PutUserAuth inserts or replaces the user's sign-in record, all of it
	// but the TOTP last step, which only AdvanceTOTPStep raises (and an
	// enrolment restarts at 0). ENOTFOUND if the user is absent.
	PutUserAuth(ctx context.Context, a *UserAuth) error
	// GetUserAuth finds the user's sign-in record. ENOTFOUND if none.
	GetUserAuth(ctx context.Context, userID string) (*UserAuth, error)
	// AdvanceTOTPStep records step as the user's last accepted TOTP step,
	// only while the stored one is lower: of two sign-ins with the same
	// code, exactly one succeeds. ECONFLICT if the step was already used
	// (or a later one); ENOTFOUND if the user has no record.
	AdvanceTOTPStep(ctx context.Context, userID string, step int64) error
	// ListUserTOTPByKey lists up to limit sign-in records with a sealed
	// TOTP secret (confirmed or not) whose data key is wrapped under a key
	// other than notKeyID, by user id.
	ListUserTOTPByKey(ctx context.Context, notKeyID string, limit int) ([]*UserAuth, error)
	// CountUserTOTPByKey counts the sealed TOTP secrets per key id.
	CountUserTOTPByKey(ctx context.Context) (map[string]int, error)
	// RewrapUserTOTP replaces the user's wrapped TOTP data key and key id
	// with to's, only while the stored ones are still from's (the secret's
	// cipher and last step are kept): ECONFLICT if they changed meanwhile
	// (a re-enrolment wins), ENOTFOUND if the user has no record.
	RewrapUserTOTP(ctx context.Context, userID string, from, to Sealed) error
	// ReplaceRecoveryCodes drops the user's recovery codes and stores hashes
	// as the new, unused ones.
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error
	// UseRecoveryCode marks the user's unused code with hash used at at.
	// ENOTFOUND if the user has no such unused code.
	UseRecoveryCode(ctx context.Context, userID, hash string, at time.Time) error
	// CountRecoveryCodes counts the user's unused recovery codes.
	CountRecoveryCodes(ctx context.Context, userID string) (int, error)

	// RecordSignInFailure counts a failed sign-in under key at at and
	// returns the failures counted: a count whose last failure is before
	// since restarts at 1.
	RecordSignInFailure(ctx context.Context, key string, at, since time.Time) (int, error)
	// GetSignInFailures returns the failures counted under key and when the
	// last was; 0 and the zero time when none.
	GetSignInFailures(ctx context.Context, key string) (int, time.Time, error)
	// ClearSignInFailures forgets key's failures. Absent is not an error.
	ClearSignInFailures(ctx context.Context, key string) error
	// DeleteSignInFailuresBefore forgets counts whose last failure is
	// before before, and returns how many.
	DeleteSignInFailuresBefore(ctx context.Context, before time.Time) (int, error)

	// CreateSession inserts s. ECONFLICT if the hash exists; ENOTFOUND if the user is absent.
	CreateSession(ctx context.Context, s *Session) error
	// GetSessionByHash finds a session by its token's hash, revoked or not. ENOTFOUND if absent.
	GetSessionByHash(ctx context.Context, hash string) (*Session, error)
	// ListUserSessions lists the user's sessions that are not revoked and
	// expire after now, by id.
	ListUserSessions(ctx context.Context, userID string, now time.Time) ([]*Session, error)
	// RevokeSession sets revoked_at on the user's session, keeping an
	// earlier revocation's time. ENOTFOUND if absent or another user's.
	RevokeSession(ctx context.Context, userID, id string, at time.Time) error
	// RevokeUserSessions revokes every live session of the user and
	// returns how many it revoked.
	RevokeUserSessions(ctx context.Context, userID string, at time.Time) (int, error)
	// SetSessionContext saves the session's active organization and
	// environment. ENOTFOUND if the session (or the organization) is absent.
	SetSessionContext(ctx context.Context, id, orgID, environmentID string) error
	// TouchSession sets last_seen_at, never moving it back. Absent is not an error.
	TouchSession(ctx context.Context, id string, at time.Time) error
	// DeleteSessionsEnded removes the sessions that ended: revoked or
	// expired before before, or last seen before idleBefore. It returns how many.
	DeleteSessionsEnded(ctx context.Context, before, idleBefore time.Time) (int, error)

	// CreateInvitation inserts i. ECONFLICT if the hash exists; ENOTFOUND if the organization is absent.
	CreateInvitation(ctx context.Context, i *Invitation) error
	// GetInvitationByHash finds an invitation by its token's hash, in any
	// state. ENOTFOUND if absent.
	GetInvitationByHash(ctx context.Context, hash string) (*Invitation, error)
	// GetInvitation finds an invitation of the organization. ENOTFOUND if absent.
	GetInvitation(ctx context.Context, orgID, id string) (*Invitation, error)
	// ListPendingInvitations lists the organization's invitations that are
	// neither accepted nor revoked and expire after now, by id.
	ListPendingInvitations(ctx context.Context, orgID string, now time.Time, p Page) (is []*Invitation, next string, err error)
	// RenewInvitation gives a pending invitation a new hash and expiry
	// (a resend). ECONFLICT if it was accepted or revoked; ENOTFOUND if absent.
	RenewInvitation(ctx context.Context, orgID, id, hash string, expiresAt time.Time) error
	// MarkInvitationMailed sets mail_sent_at. Absent is not an error.
	MarkInvitationMailed(ctx context.Context, id string, at time.Time) error
	// RevokeInvitation sets revoked_at, keeping an earlier one. ECONFLICT
	// if it was accepted; ENOTFOUND if absent.
	RevokeInvitation(ctx context.Context, orgID, id string, at time.Time) error
	// AcceptInvitation records the acceptance by userID at at, only while
	// the invitation is neither accepted nor revoked: of two acceptances,
	// exactly one succeeds. ECONFLICT otherwise; ENOTFOUND if absent.
	AcceptInvitation(ctx context.Context, id, userID string, at time.Time) error
}
