// Package controlplane holds envplane's domain: the types of the environment
// registry, the one error type, the contracts its adapters implement (Store,
// Keyring), the authorization function and the Service that orchestrates
// provisioning, rotation and routing.
package controlplane

import (
	"time"

	"github.com/envplane/envplane/drivers"
)

// Scope re-exports the driver scope so callers of the control plane need not
// import drivers for it.
type Scope = drivers.Scope

// ValidSlug reports whether s is a valid organization or environment slug:
// ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidSlug(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// Organization is the tenant boundary.
type Organization struct {
	ID              string `json:"id"`
	Slug            string `json:"slug"`
	Name            string `json:"name"`
	Require2FA      bool   `json:"require_2fa"`
	MaxEnvironments int    `json:"max_environments"`
	// MaxStorageMB is the storage quota in megabytes; 0 is none. Like
	// MaxEnvironments, only the platform admin sets it.
	MaxStorageMB int       `json:"max_storage_mb"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// User is a person who holds roles in organizations. PlatformAdmin users are
// operators: they create organizations and act as owner in every one.
type User struct {
	ID            string     `json:"id"`
	Email         string     `json:"email"`
	Name          string     `json:"name"`
	PlatformAdmin bool       `json:"platform_admin"`
	CreatedAt     time.Time  `json:"created_at"`
	DisabledAt    *time.Time `json:"disabled_at,omitempty"`
}

// OrgRole is a user's role in an organization.
type OrgRole string

// Organization roles.
const (
	OrgOwner  OrgRole = "owner"
	OrgAdmin  OrgRole = "admin"
	OrgMember OrgRole = "member"
)

// Valid reports whether r is a known organization role.
func (r OrgRole) Valid() bool { return r == OrgOwner || r == OrgAdmin || r == OrgMember }

// OrgMembership is a user's role in an organization. Email and Name are the
// user's, filled in by the store on reads.
type OrgMembership struct {
	OrgID     string    `json:"organization_id"`
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      OrgRole   `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is a bearer credential for the API. A user key acts for its user in
// its organization; an app key (EnvironmentID set, UserID empty) may only
// resolve connections of one environment up to MaxScope. A platform key has no
// organization and belongs to a platform admin. Only Hash is stored.
type APIKey struct {
	ID            string     `json:"id"`
	OrgID         string     `json:"organization_id,omitempty"`
	UserID        string     `json:"user_id,omitempty"`
	EnvironmentID string     `json:"environment_id,omitempty"`
	MaxScope      Scope      `json:"max_scope,omitempty"`
	Name          string     `json:"name"`
	Prefix        string     `json:"prefix"`
	Hash          string     `json:"-"`
	CreatedAt     time.Time  `json:"created_at"`
	LastUsedAt    *time.Time `json:"last_used_at,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

// EnvironmentType is what an environment is for.
type EnvironmentType string

// Environment types.
const (
	TypeDefault     EnvironmentType = "default"
	TypeDevelopment EnvironmentType = "development"
	TypeTest        EnvironmentType = "test"
	TypeStaging     EnvironmentType = "staging"
	TypeProduction  EnvironmentType = "production"
	TypeSandbox     EnvironmentType = "sandbox"
	TypePreview     EnvironmentType = "preview"
	TypeTrial       EnvironmentType = "trial"
)

// Valid reports whether t is a known environment type.
func (t EnvironmentType) Valid() bool {
	switch t {
	case TypeDefault, TypeDevelopment, TypeTest, TypeStaging, TypeProduction, TypeSandbox, TypePreview, TypeTrial:
		return true
	}
	return false
}

// EnvironmentStatus is where an environment is in its life.
type EnvironmentStatus string

// Environment statuses: provisioning → active ⇄ suspended; active → deleting →
// deleted; provisioning → failed.
const (
	StatusProvisioning EnvironmentStatus = "provisioning"
	StatusActive       EnvironmentStatus = "active"
	StatusSuspended    EnvironmentStatus = "suspended"
	StatusDeleting     EnvironmentStatus = "deleting"
	StatusDeleted      EnvironmentStatus = "deleted"
	StatusFailed       EnvironmentStatus = "failed"
)

// Environment belongs to one organization and has exactly one database.
type Environment struct {
	ID          string            `json:"id"`
	OrgID       string            `json:"organization_id"`
	Slug        string            `json:"slug"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Type        EnvironmentType   `json:"type"`
	Region      string            `json:"region"`
	Target      string            `json:"target"`
	IsDefault   bool              `json:"is_default"`
	IsProtected bool              `json:"is_protected"`
	Status      EnvironmentStatus `json:"status"`
	// Error is the last failure, for failed environments.
	Error     string            `json:"error,omitempty"`
	CreatedBy string            `json:"created_by"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	DeletedAt *time.Time        `json:"deleted_at,omitempty"`
	// ExpiresAt is when the background pass deprovisions the environment;
	// nil for one that does not expire (never set on protected, default or
	// production environments).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// ExpiryNoticedAt is when the environment's `expiring` audit event was
	// written for the current ExpiresAt; nil until then.
	ExpiryNoticedAt *time.Time `json:"-"`
}

// Database is the physical data-plane database of one environment.
type Database struct {
	ID             string            `json:"id"`
	EnvironmentID  string            `json:"environment_id"`
	Name           string            `json:"database_name"`
	Driver         string            `json:"driver"`
	Target         string            `json:"target"`
	Region         string            `json:"region"`
	URL            string            `json:"url,omitempty"`
	StorageLimitMB int               `json:"storage_limit_mb,omitempty"`
	SchemaVersion  int64             `json:"schema_version"`
	ProvisionedAt  *time.Time        `json:"provisioned_at,omitempty"`
	LastAccessedAt *time.Time        `json:"last_accessed_at,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	// Usage is the last measurement, nil until the first.
	Usage *Usage `json:"usage,omitempty"`
	// OverLimit is set once the database was measured above
	// StorageLimitMB (and, where the engine allows, readwrite lost its
	// write rights); it clears when a measurement is back under.
	OverLimit bool `json:"over_limit,omitempty"`
}

// Driver returns the driver-level description of the database.
func (d *Database) DriverDatabase() drivers.Database {
	return drivers.Database{Name: d.Name, URL: d.URL, Region: d.Region, Metadata: d.Metadata}
}

// CredentialStatus is where a credential is in its life.
type CredentialStatus string

// Credential statuses: active → rotating (works until its grace ends) → revoked.
const (
	CredentialActive   CredentialStatus = "active"
	CredentialRotating CredentialStatus = "rotating"
	CredentialRevoked  CredentialStatus = "revoked"
)

// Credential opens one database with one scope. The secret is stored only
// sealed (SecretCipher under a per-credential data key, DEKCipher under the
// keyring key named by KMSKeyID). For a rotating credential ExpiresAt is the
// end of its grace.
type Credential struct {
	ID           string           `json:"id"`
	DatabaseID   string           `json:"database_id"`
	Scope        Scope            `json:"scope"`
	Slot         drivers.Slot     `json:"slot"`
	Username     string           `json:"username"`
	SecretCipher []byte           `json:"-"`
	DEKCipher    []byte           `json:"-"`
	KMSKeyID     string           `json:"kms_key_id"`
	Status       CredentialStatus `json:"status"`
	IssuedAt     time.Time        `json:"issued_at"`
	ExpiresAt    *time.Time       `json:"expires_at,omitempty"`
	RotatedFrom  string           `json:"rotated_from,omitempty"`
	RevokedAt    *time.Time       `json:"revoked_at,omitempty"`
	// PromisedUntil is the latest refresh_after the router handed out for
	// the credential (an upper bound): a rotated credential is revoked only
	// after it, so every holder was told to move first.
	PromisedUntil *time.Time `json:"promised_until,omitempty"`
}

// EnvRole is a user's role on one environment.
type EnvRole string

// Environment roles, most powerful first.
const (
	EnvAdmin  EnvRole = "env_admin"
	EnvMaker  EnvRole = "env_maker"
	EnvUser   EnvRole = "env_user"
	EnvViewer EnvRole = "env_viewer"
)

// Valid reports whether r is a known environment role.
func (r EnvRole) Valid() bool {
	return r == EnvAdmin || r == EnvMaker || r == EnvUser || r == EnvViewer
}

// EnvironmentMember is a user's role on one environment. Email is filled in by
// the store on reads.
type EnvironmentMember struct {
	ID            string    `json:"id"`
	EnvironmentID string    `json:"environment_id"`
	OrgID         string    `json:"organization_id"`
	UserID        string    `json:"user_id"`
	Email         string    `json:"email"`
	Role          EnvRole   `json:"role"`
	CreatedAt     time.Time `json:"created_at"`
}

// OperationKind is what a long change does.
type OperationKind string

// Operation kinds.
const (
	OpProvision   OperationKind = "provision"
	OpDeprovision OperationKind = "deprovision"
	OpRotate      OperationKind = "rotate"
	OpClone       OperationKind = "clone"
	OpSuspend     OperationKind = "suspend"
	OpResume      OperationKind = "resume"
	// OpReset replaces an environment's database contents (adr/0020).
	OpReset   OperationKind = "reset"
	OpBackup  OperationKind = "backup"
	OpRestore OperationKind = "restore"
)

// OperationStatus is where an operation is.
type OperationStatus string

// Operation statuses.
const (
	OpPending   OperationStatus = "pending"
	OpRunning   OperationStatus = "running"
	OpSucceeded OperationStatus = "succeeded"
	OpFailed    OperationStatus = "failed"
)

// Done reports whether the operation has finished, either way.
func (s OperationStatus) Done() bool { return s == OpSucceeded || s == OpFailed }

// Operation is the durable record of a long change. Step names the saga step
// reached; the lease says which process works on it until when.
type Operation struct {
	ID             string          `json:"id"`
	OrgID          string          `json:"organization_id"`
	EnvironmentID  string          `json:"environment_id"`
	Kind           OperationKind   `json:"kind"`
	Status         OperationStatus `json:"status"`
	Step           string          `json:"step"`
	Attempts       int             `json:"attempts"`
	Error          string          `json:"error,omitempty"`
	IdempotencyKey string          `json:"-"`
	RequestHash    string          `json:"-"`
	// Params is the operation's input (JSON), e.g. the scopes to rotate.
	Params         []byte     `json:"-"`
	Response       []byte     `json:"-"`
	LeaseOwner     string     `json:"-"`
	LeaseExpiresAt *time.Time `json:"-"`
	// NotBefore delays the next attempt (retry backoff).
	NotBefore *time.Time `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// AuditEvent records one mutation: who, what, on which object, in which request.
type AuditEvent struct {
	ID            string         `json:"id"`
	OrgID         string         `json:"organization_id,omitempty"`
	EnvironmentID string         `json:"environment_id,omitempty"`
	Actor         string         `json:"actor"`
	Action        string         `json:"action"`
	Target        string         `json:"target"`
	Details       map[string]any `json:"details,omitempty"`
	RequestID     string         `json:"request_id,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
}

// IdempotencyRecord remembers the first response to a POST sent with an
// Idempotency-Key, so a retry replays it.
type IdempotencyRecord struct {
	// Owner is the API key that sent the request; keys are scoped per key.
	Owner       string
	Key         string
	RequestHash string
	// StatusCode is 0 while the first request is still running.
	StatusCode int
	Response   []byte
	CreatedAt  time.Time
}
