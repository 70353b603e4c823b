package httpapi

import (
	"net/http"

	cp "github.com/envplane/envplane/controlplane"
)

// Route describes one endpoint. The server registers its handler from this
// table and the OpenAPI document is generated from it, so the two cannot
// disagree.
type Route struct {
	Method string
	// Path uses echo's syntax (:org); OpenAPI shows it as {org}.
	Path        string
	OperationID string
	Summary     string
	// Request is a zero value of the JSON body type, nil when there is none.
	Request any
	// Response is a zero value of the success body type, nil for 204.
	Response any
	// Status is the success status; Accepted lists a 202 alternative body.
	// Every 202 carries Location: the operation to follow.
	Status   int
	Accepted any
	// Query names the query parameters the route reads.
	Query []string
	// QueryEnums gives, for the query parameters that take one of a fixed
	// set of values, a value of the Go type whose values they are.
	QueryEnums map[string]any
	// Public routes need no API key.
	Public bool
}

const (
	orgPath = "/v1/organizations/:org"
	envPath = orgPath + "/environments/:env"
)

// Routes returns the API's route table.
func Routes() []Route {
	list := []string{"limit", "cursor"}
	// A resolve, or with wait (and after, the credential held) a watch.
	watchQuery := []string{"scope", "after", "wait"}
	return append([]Route{
		{Method: http.MethodGet, Path: "/healthz", OperationID: "healthz", Summary: "Liveness", Status: http.StatusOK, Public: true},
		{Method: http.MethodGet, Path: "/readyz", OperationID: "readyz", Summary: "Readiness: the store answers (503 otherwise); whether the keyring can wrap new secrets", Response: cp.Readiness{}, Status: http.StatusOK, Public: true},
		{Method: http.MethodGet, Path: "/metrics", OperationID: "metrics", Summary: "Prometheus metrics", Status: http.StatusOK, Public: true},
		{Method: http.MethodGet, Path: "/v1/openapi.json", OperationID: "openapi", Summary: "This API's OpenAPI description", Status: http.StatusOK, Public: true},
		{Method: http.MethodGet, Path: "/v1/me", OperationID: "getMe", Summary: "The calling principal, its organizations and roles", Response: cp.Me{}, Status: http.StatusOK},

		{Method: http.MethodPost, Path: "/v1/organizations", OperationID: "createOrganization", Summary: "Create an organization and provision its default environment (platform admin)", Request: cp.CreateOrganizationRequest{}, Response: cp.CreateOrganizationResponse{}, Status: http.StatusCreated},
		{Method: http.MethodGet, Path: "/v1/organizations", OperationID: "listOrganizations", Summary: "Organizations visible to the caller", Response: cp.List[*cp.Organization]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodGet, Path: orgPath, OperationID: "getOrganization", Summary: "One organization", Response: cp.Organization{}, Status: http.StatusOK},
		{Method: http.MethodPatch, Path: orgPath, OperationID: "updateOrganization", Summary: "Update an organization (owner; quotas: platform admin)", Request: cp.UpdateOrganizationRequest{}, Response: cp.Organization{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: orgPath, OperationID: "deleteOrganization", Summary: "Delete an organization (owner); 409 while non-default environments exist", Status: http.StatusNoContent},

		{Method: http.MethodGet, Path: orgPath + "/members", OperationID: "listMembers", Summary: "Organization members", Response: cp.List[*cp.OrgMembership]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodPost, Path: orgPath + "/members", OperationID: "addMember", Summary: "Add a member; a new email creates the user", Request: cp.AddMemberRequest{}, Response: cp.OrgMembership{}, Status: http.StatusCreated},
		{Method: http.MethodPatch, Path: orgPath + "/members/:user", OperationID: "updateMember", Summary: "Change a member's role; demoting the last owner is 409", Request: cp.UpdateMemberRequest{}, Response: cp.OrgMembership{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: orgPath + "/members/:user", OperationID: "removeMember", Summary: "Remove a member; removing the last owner is 409", Status: http.StatusNoContent},

		{Method: http.MethodGet, Path: orgPath + "/api-keys", OperationID: "listAPIKeys", Summary: "API keys (owners and admins see all, users their own)", Response: cp.List[*cp.APIKey]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodPost, Path: orgPath + "/api-keys", OperationID: "createAPIKey", Summary: "Create an API key; the token is shown once", Request: cp.CreateAPIKeyRequest{}, Response: cp.CreateAPIKeyResponse{}, Status: http.StatusCreated},
		{Method: http.MethodGet, Path: orgPath + "/api-keys/:id", OperationID: "getAPIKey", Summary: "One API key", Response: cp.APIKey{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: orgPath + "/api-keys/:id", OperationID: "revokeAPIKey", Summary: "Revoke an API key", Status: http.StatusNoContent},

		{Method: http.MethodGet, Path: orgPath + "/audit-events", OperationID: "listAuditEvents", Summary: "Audit events, newest first", Response: cp.List[*cp.AuditEvent]{}, Status: http.StatusOK, Query: list},

		{Method: http.MethodPost, Path: orgPath + "/environments", OperationID: "createEnvironment", Summary: "Create an environment and provision its database (Prefer: wait=N)", Request: cp.CreateEnvironmentRequest{}, Response: cp.EnvironmentOperationResponse{}, Status: http.StatusCreated, Accepted: cp.EnvironmentOperationResponse{}},
		{Method: http.MethodPost, Path: "/v1/environments", OperationID: "createEnvironmentInOrganization", Summary: "Create an environment, naming the organization in the body", Request: cp.CreateEnvironmentRequest{}, Response: cp.EnvironmentOperationResponse{}, Status: http.StatusCreated, Accepted: cp.EnvironmentOperationResponse{}},
		{Method: http.MethodGet, Path: orgPath + "/environments", OperationID: "listEnvironments", Summary: "Environments the caller can see; status deleted lists tombstones", Response: cp.List[*cp.EnvironmentView]{}, Status: http.StatusOK,
			Query: []string{"type", "status", "target", "limit", "cursor"}, QueryEnums: map[string]any{"type": cp.TypeDefault, "status": cp.StatusActive}},
		{Method: http.MethodGet, Path: envPath, OperationID: "getEnvironment", Summary: "One environment with its database", Response: cp.EnvironmentView{}, Status: http.StatusOK},
		{Method: http.MethodPatch, Path: envPath, OperationID: "updateEnvironment", Summary: "Update name, description, protection, expiry (ttl or expires_at); storage limit (owner, admin)", Request: cp.UpdateEnvironmentRequest{}, Response: cp.EnvironmentView{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: envPath, OperationID: "deleteEnvironment", Summary: "Delete an environment and drop its database; 409 if protected or default", Response: cp.EnvironmentOperationResponse{}, Status: http.StatusAccepted},
		{Method: http.MethodPost, Path: envPath + "/suspend", OperationID: "suspendEnvironment", Summary: "Suspend: connection lookups answer 423", Response: cp.EnvironmentView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: envPath + "/resume", OperationID: "resumeEnvironment", Summary: "Resume a suspended environment", Response: cp.EnvironmentView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: envPath + "/reset", OperationID: "resetEnvironment", Summary: "Replace the database's contents with a copy of another environment (mode full; its clone source by default) or an empty schema (mode schema); credentials and DSN stay; 409 if protected", Request: cp.ResetEnvironmentRequest{}, Response: cp.EnvironmentOperationResponse{}, Status: http.StatusAccepted},

		{Method: http.MethodGet, Path: envPath + "/connection", OperationID: "getConnection", Summary: "The router: a connection descriptor with the newest active credential", Response: cp.Connection{}, Status: http.StatusOK, Query: watchQuery},
		{Method: http.MethodGet, Path: "/v1/environments/:id/connection", OperationID: "getConnectionByID", Summary: "The router, by environment id", Response: cp.Connection{}, Status: http.StatusOK, Query: watchQuery},
		{Method: http.MethodGet, Path: envPath + "/receipts", OperationID: "listReceipts", Summary: "Who resolved which credential of the environment, newest first", Response: cp.List[*cp.Receipt]{}, Status: http.StatusOK, Query: []string{"since", "until", "credential", "limit", "cursor"}},

		{Method: http.MethodGet, Path: envPath + "/credentials", OperationID: "listCredentials", Summary: "Credential metadata, never secrets", Response: cp.List[*cp.Credential]{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: envPath + "/credentials/rotate", OperationID: "rotateCredentials", Summary: "Rotate with a grace period", Request: cp.RotateCredentialsRequest{}, Response: cp.CredentialsResponse{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: envPath + "/credentials/revoke", OperationID: "revokeCredentials", Summary: "Emergency: revoke now and re-issue", Request: cp.RevokeCredentialsRequest{}, Response: cp.CredentialsResponse{}, Status: http.StatusOK},

		{Method: http.MethodGet, Path: envPath + "/members", OperationID: "listEnvironmentMembers", Summary: "Environment members", Response: cp.List[*cp.EnvironmentMember]{}, Status: http.StatusOK},
		{Method: http.MethodPut, Path: envPath + "/members/:user", OperationID: "putEnvironmentMember", Summary: "Give a user a role on the environment", Request: cp.PutEnvironmentMemberRequest{}, Response: cp.EnvironmentMember{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: envPath + "/members/:user", OperationID: "removeEnvironmentMember", Summary: "Remove a user's role on the environment", Status: http.StatusNoContent},

		{Method: http.MethodGet, Path: envPath + "/schema", OperationID: "getSchema", Summary: "Migration ledger, pending migrations and drift", Response: cp.SchemaStatus{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: envPath + "/schema/migrate", OperationID: "migrateSchema", Summary: "Apply pending migrations", Response: cp.SchemaStatus{}, Status: http.StatusOK},

		{Method: http.MethodGet, Path: envPath + "/usage", OperationID: "getEnvironmentUsage", Summary: "The environment's last measured usage (bytes; tables and connections where the engine tells), its storage limit and whether it is over", Response: cp.EnvironmentUsage{}, Status: http.StatusOK},
		{Method: http.MethodGet, Path: orgPath + "/usage", OperationID: "getOrganizationUsage", Summary: "Last measured usage of the environments the caller can see, summed per environment type", Response: cp.OrganizationUsage{}, Status: http.StatusOK},

		{Method: http.MethodPost, Path: envPath + "/backups", OperationID: "createBackup", Summary: "Take a backup now: a consistent copy, sealed under the keyring and checksummed (Prefer: wait=N)", Response: cp.BackupResponse{}, Status: http.StatusCreated, Accepted: cp.BackupResponse{}},
		{Method: http.MethodGet, Path: envPath + "/backups", OperationID: "listBackups", Summary: "The environment's backups, newest first, with size, time and SHA-256", Response: cp.List[*cp.Backup]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodPost, Path: envPath + "/restore", OperationID: "restoreEnvironment", Summary: "Restore a backup (backup_id) into a new environment (into), verified before it is active; timestamp (point in time) where the engine offers it", Request: cp.RestoreRequest{}, Response: cp.EnvironmentOperationResponse{}, Status: http.StatusCreated, Accepted: cp.EnvironmentOperationResponse{}},

		{Method: http.MethodGet, Path: "/v1/targets", OperationID: "listTargets", Summary: "Targets: name and region for everyone; driver, capacity, databases used and this replica's view of their health for the platform admin", Response: cp.List[cp.TargetView]{}, Status: http.StatusOK},
		{Method: http.MethodGet, Path: "/v1/keyring", OperationID: "getKeyring", Summary: "Key coverage: the current key version and credentials per version (platform admin)", Response: cp.KeyCoverage{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/keyring/rotate", OperationID: "rotateKeyring", Summary: "Add a key version and make it current (platform admin)", Response: cp.KeyCoverage{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/keyring/rewrap", OperationID: "rewrapKeyring", Summary: "Re-wrap every data key under the current version (platform admin)", Response: cp.KeyCoverage{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/keyring/retire", OperationID: "retireKeyring", Summary: "Stop key versions below one from unwrapping; 409 while anything is wrapped below it (platform admin)", Request: cp.RetireKeysRequest{}, Response: cp.KeyCoverage{}, Status: http.StatusOK},

		{Method: http.MethodGet, Path: orgPath + "/operations", OperationID: "listOperations", Summary: "Operations of the environments the caller can see, newest first", Response: cp.List[*cp.Operation]{}, Status: http.StatusOK,
			Query: []string{"environment", "status", "kind", "limit", "cursor"}, QueryEnums: map[string]any{"status": cp.OpPending, "kind": cp.OpProvision}},
		{Method: http.MethodGet, Path: "/v1/operations/:id", OperationID: "getOperation", Summary: "One operation", Response: cp.Operation{}, Status: http.StatusOK},

		{Method: http.MethodPost, Path: orgPath + "/rollouts", OperationID: "createRollout", Summary: "Roll the app migrations up to a version across the organization's environments, in waves by type (owner, admin); 409 while another rollout is unfinished", Request: cp.CreateRolloutRequest{}, Response: cp.RolloutView{}, Status: http.StatusCreated},
		{Method: http.MethodGet, Path: orgPath + "/rollouts", OperationID: "listRollouts", Summary: "The organization's rollouts, newest first", Response: cp.List[*cp.Rollout]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodGet, Path: orgPath + "/rollouts/:id", OperationID: "getRollout", Summary: "One rollout with each environment's status", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: orgPath + "/rollouts/:id/pause", OperationID: "pauseRollout", Summary: "Pause a rollout: migrations running finish, no more start", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: orgPath + "/rollouts/:id/resume", OperationID: "resumeRollout", Summary: "Resume a paused rollout", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: orgPath + "/rollouts/:id/cancel", OperationID: "cancelRollout", Summary: "Cancel a rollout: environments not started are skipped", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/rollouts", OperationID: "createPlatformRollout", Summary: "Roll the app migrations across every organization's environments (platform admin)", Request: cp.CreateRolloutRequest{}, Response: cp.RolloutView{}, Status: http.StatusCreated},
		{Method: http.MethodGet, Path: "/v1/rollouts", OperationID: "listPlatformRollouts", Summary: "Platform-wide rollouts, newest first (platform admin)", Response: cp.List[*cp.Rollout]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodGet, Path: "/v1/rollouts/:id", OperationID: "getPlatformRollout", Summary: "One platform-wide rollout (platform admin)", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/rollouts/:id/pause", OperationID: "pausePlatformRollout", Summary: "Pause a platform-wide rollout (platform admin)", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/rollouts/:id/resume", OperationID: "resumePlatformRollout", Summary: "Resume a platform-wide rollout (platform admin)", Response: cp.RolloutView{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: "/v1/rollouts/:id/cancel", OperationID: "cancelPlatformRollout", Summary: "Cancel a platform-wide rollout (platform admin)", Response: cp.RolloutView{}, Status: http.StatusOK},
	}, peopleRoutes()...)
}
