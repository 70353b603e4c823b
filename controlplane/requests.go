package controlplane

import (
	"time"

	"github.com/envplane/envplane/drivers"
)

// The request and response bodies of the API. The HTTP layer decodes requests
// straight into these (unknown fields rejected) and the Go client sends them,
// so the wire format has one definition. Optional fields are pointers: absent
// differs from zero.

// CreateOrganizationRequest is the body of POST /v1/organizations.
type CreateOrganizationRequest struct {
	Slug            string `json:"slug"`
	Name            string `json:"name"`
	Require2FA      *bool  `json:"require_2fa,omitempty"`
	MaxEnvironments *int   `json:"max_environments,omitempty"`
	MaxStorageMB    *int   `json:"max_storage_mb,omitempty"`
}

// CreateOrganizationResponse is the 201 body of POST /v1/organizations.
type CreateOrganizationResponse struct {
	Organization       *Organization    `json:"organization"`
	DefaultEnvironment *EnvironmentView `json:"default_environment"`
	Operation          *Operation       `json:"operation,omitempty"`
}

// UpdateOrganizationRequest is the body of PATCH /v1/organizations/{org}.
type UpdateOrganizationRequest struct {
	Name       *string `json:"name,omitempty"`
	Require2FA *bool   `json:"require_2fa,omitempty"`
	// MaxEnvironments and MaxStorageMB are the quotas: the platform admin's
	// to set (EFORBIDDEN for anyone else).
	MaxEnvironments *int `json:"max_environments,omitempty"`
	MaxStorageMB    *int `json:"max_storage_mb,omitempty"`
}

// AddMemberRequest is the body of POST /v1/organizations/{org}/members; a new
// email creates the user.
type AddMemberRequest struct {
	Email string  `json:"email"`
	Name  string  `json:"name,omitempty"`
	Role  OrgRole `json:"role"`
}

// UpdateMemberRequest is the body of PATCH /v1/organizations/{org}/members/{user}.
type UpdateMemberRequest struct {
	Role OrgRole `json:"role"`
}

// CreateAPIKeyRequest is the body of POST /v1/organizations/{org}/api-keys.
// With Environment set it makes an app key bound to that environment (slug or
// id) up to MaxScope (default readonly); otherwise a user key for User (email
// or id; default the caller).
type CreateAPIKeyRequest struct {
	Name        string     `json:"name"`
	User        string     `json:"user,omitempty"`
	Environment string     `json:"environment,omitempty"`
	MaxScope    Scope      `json:"max_scope,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// CreateAPIKeyResponse is the 201 body of POST .../api-keys: the only time the token is shown.
type CreateAPIKeyResponse struct {
	ID          string     `json:"id"`
	Token       string     `json:"token"`
	Name        string     `json:"name"`
	User        string     `json:"user,omitempty"`
	Environment string     `json:"environment,omitempty"`
	MaxScope    Scope      `json:"max_scope,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// CreateEnvironmentRequest is the body of POST .../environments (and of POST
// /v1/environments, with Organization set).
type CreateEnvironmentRequest struct {
	Organization string          `json:"organization,omitempty"`
	Slug         string          `json:"slug"`
	Name         string          `json:"name,omitempty"`
	Type         EnvironmentType `json:"type"`
	Region       string          `json:"region,omitempty"`
	Target       string          `json:"target,omitempty"`
	IsProtected  *bool           `json:"is_protected,omitempty"`
	Description  string          `json:"description,omitempty"`
	// FromEnvironment (slug or id) and Clone ("schema" or "full") create the
	// database as a copy of another environment's, on the same target.
	FromEnvironment string `json:"from_environment,omitempty"`
	Clone           string `json:"clone,omitempty"`
	// TTL (a duration such as "72h") or ExpiresAt, not both, make the
	// environment expire; without either its type's default applies.
	TTL       string     `json:"ttl,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// UpdateEnvironmentRequest is the body of PATCH .../environments/{env}.
type UpdateEnvironmentRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	IsProtected *bool   `json:"is_protected,omitempty"`
	// TTL (from now) or ExpiresAt, not both, set a new expiry. Protecting
	// an environment removes its expiry.
	TTL       string     `json:"ttl,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// StorageLimitMB sets the database's storage limit (owner, admin),
	// 1 to MaxStorageLimitMB; a database measured above it is over_limit.
	StorageLimitMB *int `json:"storage_limit_mb,omitempty"`
}

// DatabaseView is the database as environment responses show it.
type DatabaseView struct {
	Driver        string     `json:"driver"`
	Target        string     `json:"target"`
	Region        string     `json:"region"`
	DatabaseName  string     `json:"database_name"`
	SchemaVersion int64      `json:"schema_version"`
	ProvisionedAt *time.Time `json:"provisioned_at,omitempty"`
	// StorageLimitMB is 0 for no limit; OverLimit says the last
	// measurement was above it.
	StorageLimitMB int  `json:"storage_limit_mb,omitempty"`
	OverLimit      bool `json:"over_limit,omitempty"`
}

// EnvironmentView is an environment with its database.
type EnvironmentView struct {
	*Environment
	// Expiring is true when the environment expires within ExpiryNotice.
	Expiring bool          `json:"expiring"`
	Database *DatabaseView `json:"database,omitempty"`
}

// EnvironmentOperationResponse is the 202 body when an environment change
// did not finish within the request's wait.
type EnvironmentOperationResponse struct {
	Environment *EnvironmentView `json:"environment"`
	Operation   *Operation       `json:"operation"`
}

// Connection is the router's answer: everything an application needs to
// connect to its environment's database now. DSN and Secret stay
// drivers.Secret (printed and marshalled as [redacted]) until the HTTP
// layer reveals them into the one answer that carries them.
type Connection struct {
	EnvironmentID string         `json:"environment_id"`
	Organization  string         `json:"organization"`
	Environment   string         `json:"environment"`
	Driver        string         `json:"driver"`
	Scope         drivers.Scope  `json:"scope"`
	DSN           drivers.Secret `json:"dsn"`
	URL           string         `json:"url"`
	Host          string         `json:"host,omitempty"`
	Port          int            `json:"port,omitempty"`
	Database      string         `json:"database"`
	Username      string         `json:"username,omitempty"`
	Secret        drivers.Secret `json:"secret"`
	CredentialID  string         `json:"credential_id"`
	ExpiresAt     *time.Time     `json:"expires_at,omitempty"`
	RefreshAfter  time.Time      `json:"refresh_after"`
}

// RotateCredentialsRequest is the body of POST .../credentials/rotate. Scope
// is "all" (the default) or one scope.
type RotateCredentialsRequest struct {
	Scope        string `json:"scope,omitempty"`
	GraceSeconds *int   `json:"grace_seconds,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// RevokeCredentialsRequest is the body of POST .../credentials/revoke: revoke
// now (one credential, or every credential of the environment) and re-issue.
type RevokeCredentialsRequest struct {
	CredentialID string `json:"credential_id,omitempty"`
	Reason       string `json:"reason"`
}

// CredentialsResponse answers rotate and revoke: the operation and the
// credentials' metadata afterwards (never secrets).
type CredentialsResponse struct {
	Operation   *Operation    `json:"operation,omitempty"`
	Credentials []*Credential `json:"credentials"`
	// RevokeAfter is when the credentials a rotation replaced will be
	// revoked; GraceStretched says that this is later than the grace asked
	// for, because holders were told to refresh later than that.
	RevokeAfter    *time.Time `json:"revoke_after,omitempty"`
	GraceStretched bool       `json:"grace_stretched,omitempty"`
}

// PutEnvironmentMemberRequest is the body of PUT .../environments/{env}/members/{user}.
type PutEnvironmentMemberRequest struct {
	Role EnvRole `json:"role"`
}

// SchemaMigration is one migration as the schema endpoints report it.
type SchemaMigration struct {
	Namespace string     `json:"namespace"`
	Version   int64      `json:"version"`
	Name      string     `json:"name"`
	Checksum  string     `json:"checksum"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// SchemaStatus answers GET .../schema and POST .../schema/migrate.
type SchemaStatus struct {
	SchemaVersion int64             `json:"schema_version"`
	Applied       []SchemaMigration `json:"applied"`
	Pending       []SchemaMigration `json:"pending"`
	Drift         []SchemaMigration `json:"drift"`
	// Tampered lists what in the database's system tables was changed
	// outside envplane; migrations are refused (409 tampered) while it is
	// not empty.
	Tampered []string `json:"tampered,omitempty"`
}

// Me answers GET /v1/me.
type Me struct {
	KeyID         string         `json:"key_id"`
	User          *User          `json:"user,omitempty"`
	PlatformAdmin bool           `json:"platform_admin"`
	EnvironmentID string         `json:"environment_id,omitempty"`
	MaxScope      Scope          `json:"max_scope,omitempty"`
	Organizations []MeMembership `json:"organizations"`
}

// MeMembership is one organization the principal may act in.
type MeMembership struct {
	ID   string  `json:"id"`
	Slug string  `json:"slug"`
	Name string  `json:"name"`
	Role OrgRole `json:"role"`
}

// List is the body of every list endpoint; Next is the cursor of the next
// page, empty on the last.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// RetireKeysRequest is the body of POST /v1/keyring/retire: every key
// version below Below stops unwrapping.
type RetireKeysRequest struct {
	Below int `json:"below"`
}

// Readiness answers GET /readyz: the store answers; Keyring says whether
// new data keys can be wrapped now ("ok" or "unavailable"). A replica whose
// keyring is down still serves cached resolves, so it stays ready.
type Readiness struct {
	Status     string `json:"status"`
	Keyring    string `json:"keyring"`
	NewSecrets bool   `json:"new_secrets"`
}
