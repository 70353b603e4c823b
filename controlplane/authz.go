package controlplane

import (
	"strings"

	"github.com/envplane/envplane/drivers"
)

// Action is something a principal asks to do.
type Action string

// Actions, with who may do them (DESIGN §9). Owner and admin may do every
// action of an organization except that update and delete of the organization
// itself are the owner's; members act through their environment roles.
const (
	ActOrgCreate      Action = "org.create"           // platform admin only
	ActKeyringManage  Action = "keyring.manage"       // platform admin only: key coverage, rotate, rewrap, retire
	ActTargetsInspect Action = "targets.inspect"      // platform admin only: targets' capacity, use and health
	ActOrgQuota       Action = "org.quota"            // platform admin only: set max_environments and max_storage_mb
	ActOrgRead        Action = "org.read"             // any org member; an app key for its own org
	ActOrgUpdate      Action = "org.update"           // owner
	ActOrgDelete      Action = "org.delete"           // owner
	ActMemberRead     Action = "member.read"          // owner, admin
	ActMemberWrite    Action = "member.write"         // owner, admin
	ActAPIKeyRead     Action = "apikey.read"          // owner, admin: any key of the org; member: only their own keys
	ActAPIKeyWrite    Action = "apikey.write"         // same rule as read (create/revoke)
	ActAuditRead      Action = "audit.read"           // owner, admin
	ActEnvCreate      Action = "env.create"           // owner, admin
	ActEnvRead        Action = "env.read"             // owner, admin, any env role; an app key for its own environment
	ActEnvUpdate      Action = "env.update"           // owner, admin, env_admin (name, description, is_protected)
	ActEnvDelete      Action = "env.delete"           // owner, admin
	ActEnvSuspend     Action = "env.suspend"          // owner, admin (suspend and resume)
	ActEnvReset       Action = "env.reset"            // owner, admin
	ActConnAdmin      Action = "connection.admin"     // owner, admin, env_admin
	ActConnReadWrite  Action = "connection.readwrite" // owner, admin, env_admin, env_maker, env_user
	ActConnReadOnly   Action = "connection.readonly"  // owner, admin, every env role
	ActCredRead       Action = "credential.read"      // owner, admin, env_admin (metadata and router receipts, never secrets)
	ActCredRotate     Action = "credential.rotate"    // owner, admin, env_admin (rotate and emergency revoke)
	ActEnvMemberRead  Action = "envmember.read"       // owner, admin, env_admin
	ActEnvMemberWrite Action = "envmember.write"      // owner, admin, env_admin
	ActSchemaRead     Action = "schema.read"          // owner, admin, every env role
	ActSchemaMigrate  Action = "schema.migrate"       // owner, admin, env_admin, env_maker
	ActOperationRead  Action = "operation.read"       // whoever can see (ActEnvRead) the operation's environment
	ActOwnerWrite     Action = "owner.write"          // owner: add, promote, demote or remove an owner, or make an owner's key
	ActUsageRead      Action = "usage.read"           // owner, admin, every env role: an environment's usage
	ActOrgUsageRead   Action = "org.usage.read"       // owner, admin, member: the organization's usage, summed over the environments they see
	ActEnvLimit       Action = "env.limit"            // owner, admin: set an environment's storage limit
	// ActRollout is creating, reading and controlling the organization's
	// fleet rollouts (owner, admin); ActPlatformRollout the platform-wide
	// ones (platform admin only).
	ActRollout         Action = "rollout"
	ActPlatformRollout Action = "rollout.platform"
	ActBackupRead      Action = "backup.read"    // owner, admin, env_admin: list an environment's backups
	ActBackupCreate    Action = "backup.create"  // owner, admin, env_admin: take a backup now
	ActBackupRestore   Action = "backup.restore" // owner, admin: restore a backup
)

// ConnectionAction returns the action that resolving a connection of scope
// needs (ActConnAdmin for drivers.ScopeAdmin, and so on); ok is false for an
// invalid scope.
func ConnectionAction(scope Scope) (Action, bool) {
	switch scope {
	case drivers.ScopeAdmin:
		return ActConnAdmin, true
	case drivers.ScopeReadWrite:
		return ActConnReadWrite, true
	case drivers.ScopeReadOnly:
		return ActConnReadOnly, true
	}
	return "", false
}

// Principal is who calls the API, as authentication resolved it from the API key.
type Principal struct {
	KeyID  string
	UserID string // empty for app keys
	Email  string
	// PlatformAdmin marks the operator: it creates organizations and acts as
	// owner in every organization its key can reach.
	PlatformAdmin bool
	// OrgID is the organization the key belongs to; empty for platform keys.
	// A key bound to an organization reaches nothing outside it, whoever holds it.
	OrgID string
	// EnvironmentID is, for app keys, the one environment the key is bound to.
	EnvironmentID string
	// MaxScope is, for app keys, the highest connection scope allowed.
	MaxScope Scope
	// SessionID is set when the principal is a signed-in session (then
	// KeyID is the session's id too): it acts as its user in every
	// organization the user belongs to, exactly as the user's roles allow.
	SessionID string
}

// Operator returns the principal of envplane's operator commands (envplane
// keys ...): the platform admin, acting from the machine rather than with a
// key. Audit events name it "operator".
func Operator() *Principal { return &Principal{PlatformAdmin: true} }

// IsApp reports whether p is an app key.
func (p *Principal) IsApp() bool { return p.EnvironmentID != "" && p.UserID == "" }

// Subject is a principal together with the roles the service looked up for the
// resource at hand.
type Subject struct {
	Principal *Principal
	OrgRole   OrgRole // the user's role in Resource.OrgID; "" if not a member
	EnvRole   EnvRole // the user's role on Resource.EnvironmentID; "" if none
}

// Resource is what an action touches. OrgID is always set except for
// ActOrgCreate; EnvironmentID for environment-level actions; OwnerUserID for
// API keys.
type Resource struct {
	OrgID         string
	EnvironmentID string
	OwnerUserID   string
}

// grant is a set of standings that may do an action. A subject's standing on a
// resource is the same kind of set, and an action is allowed when they meet.
type grant uint16

const (
	gPlatform grant = 1 << iota
	gOwner
	gAdmin
	gMember
	gEnvAdmin
	gEnvMaker
	gEnvUser
	gEnvViewer
	// gKeyOwner is the user an API key belongs to.
	gKeyOwner

	gLast     = gKeyOwner
	gOrgAdmin = gOwner | gAdmin
	gAnyEnv   = gEnvAdmin | gEnvMaker | gEnvUser | gEnvViewer
)

// rule says who may do one action.
type rule struct {
	// env marks environment-level actions: the subject must see
	// Resource.EnvironmentID, or the answer is ENOTFOUND.
	env bool
	// who may do it among users.
	who grant
	// app allows app keys, on their own organization or environment.
	app bool
	// scope, for connection actions, is what an app key's MaxScope must cover.
	scope Scope
}

// ruleFor is the authorization table; ok is false for an unknown action.
func ruleFor(a Action) (r rule, ok bool) {
	switch a {
	case ActOrgCreate, ActKeyringManage, ActTargetsInspect, ActOrgQuota, ActPlatformRollout:
		return rule{who: gPlatform}, true
	case ActOrgRead:
		return rule{who: gOrgAdmin | gMember, app: true}, true
	case ActOrgUpdate, ActOrgDelete, ActOwnerWrite:
		return rule{who: gOwner}, true
	case ActMemberRead, ActMemberWrite, ActAuditRead, ActEnvCreate, ActRollout:
		return rule{who: gOrgAdmin}, true
	case ActOrgUsageRead:
		return rule{who: gOrgAdmin | gMember}, true
	case ActAPIKeyRead, ActAPIKeyWrite:
		return rule{who: gOrgAdmin | gKeyOwner}, true
	case ActEnvRead, ActOperationRead:
		return rule{env: true, who: gOrgAdmin | gAnyEnv, app: true}, true
	case ActEnvUpdate, ActCredRead, ActCredRotate, ActEnvMemberRead, ActEnvMemberWrite, ActBackupRead, ActBackupCreate:
		return rule{env: true, who: gOrgAdmin | gEnvAdmin}, true
	case ActEnvDelete, ActEnvSuspend, ActEnvLimit, ActEnvReset, ActBackupRestore:
		return rule{env: true, who: gOrgAdmin}, true
	case ActConnAdmin:
		return rule{env: true, who: gOrgAdmin | gEnvAdmin, app: true, scope: drivers.ScopeAdmin}, true
	case ActConnReadWrite:
		return rule{env: true, who: gOrgAdmin | gEnvAdmin | gEnvMaker | gEnvUser, app: true, scope: drivers.ScopeReadWrite}, true
	case ActConnReadOnly:
		return rule{env: true, who: gOrgAdmin | gAnyEnv, app: true, scope: drivers.ScopeReadOnly}, true
	case ActSchemaRead, ActUsageRead:
		return rule{env: true, who: gOrgAdmin | gAnyEnv}, true
	case ActSchemaMigrate:
		return rule{env: true, who: gOrgAdmin | gEnvAdmin | gEnvMaker}, true
	}
	return rule{}, false
}

// Authorize decides whether s may do a on r. It returns nil when allowed; an
// *Error with ENOTFOUND when the resource is not visible to the subject
// (another organization, an environment the member has no role on, another
// environment for an app key), so that cross-org access is indistinguishable
// from absence; and an *Error with EFORBIDDEN when the resource is visible but
// the role is not enough, for an unknown action, and for a subject without a
// principal. Messages are generic and never name the resource. It does no I/O
// and is safe for concurrent use.
func Authorize(s Subject, a Action, r Resource) error {
	p := s.Principal
	rl, ok := ruleFor(a)
	switch {
	case p == nil:
		return Errorf(EFORBIDDEN, "forbidden")
	case !ok:
		return Errorf(EFORBIDDEN, "forbidden: unknown action")
	case rl.who == gPlatform:
		// Creating an organization touches no existing one. An app key has
		// no user, so it is never the operator.
		if p.PlatformAdmin && !p.IsApp() {
			return nil
		}
		return Errorf(EFORBIDDEN, "forbidden: requires platform admin")
	case !orgVisible(s, r), rl.env && !envVisible(s, r):
		return Errorf(ENOTFOUND, "not found")
	case p.IsApp():
		return authorizeApp(p, rl)
	case rl.who&standing(s, r) != 0:
		return nil
	}
	return Errorf(EFORBIDDEN, "forbidden: requires %s", describe(rl.who))
}

// authorizeApp decides for an app key once the resource is known visible to it.
func authorizeApp(p *Principal, rl rule) error {
	switch {
	case !rl.app:
		return Errorf(EFORBIDDEN, "forbidden: not allowed for an app key")
	case rl.scope != "" && !p.MaxScope.Covers(rl.scope):
		return Errorf(EFORBIDDEN, "forbidden: scope %s exceeds the key's maximum", rl.scope)
	}
	return nil
}

// Visible reports whether the subject may see the environment r at all; the
// service filters environment lists with it. It is false for a subject without
// a principal and for a resource without an organization or environment.
func Visible(s Subject, r Resource) bool {
	return s.Principal != nil && orgVisible(s, r) && envVisible(s, r)
}

// orgVisible reports whether the organization r.OrgID exists for the subject.
func orgVisible(s Subject, r Resource) bool {
	p := s.Principal
	switch {
	case r.OrgID == "":
		return false
	case p.OrgID != "" && p.OrgID != r.OrgID:
		return false
	case p.IsApp():
		// An app key is always bound to an organization; one that is not is
		// treated as bound to none.
		return p.OrgID != ""
	}
	return p.PlatformAdmin || s.OrgRole.Valid()
}

// envVisible reports whether the environment r.EnvironmentID exists for a
// subject that sees its organization.
func envVisible(s Subject, r Resource) bool {
	p := s.Principal
	switch {
	case r.EnvironmentID == "":
		return false
	case p.IsApp():
		return p.EnvironmentID == r.EnvironmentID
	case SeesAllEnvironments(s):
		return true
	}
	return s.OrgRole.Valid() && s.EnvRole.Valid()
}

// SeesAllEnvironments reports whether the subject sees every environment of
// an organization it can see (the platform admin, owners and admins), so no
// environment role needs looking up or filtering by.
func SeesAllEnvironments(s Subject) bool {
	p := s.Principal
	return p != nil && !p.IsApp() && (p.PlatformAdmin || s.OrgRole == OrgOwner || s.OrgRole == OrgAdmin)
}

// standing returns what a user subject is on r, as a grant set. App keys have
// no standing: their roles, if any were passed, are ignored.
func standing(s Subject, r Resource) grant {
	p := s.Principal
	var g grant
	if p.PlatformAdmin {
		g |= gPlatform | gOwner
	}
	switch s.OrgRole {
	case OrgOwner:
		g |= gOwner
	case OrgAdmin:
		g |= gAdmin
	case OrgMember:
		g |= gMember
	}
	switch s.EnvRole {
	case EnvAdmin:
		g |= gEnvAdmin
	case EnvMaker:
		g |= gEnvMaker
	case EnvUser:
		g |= gEnvUser
	case EnvViewer:
		g |= gEnvViewer
	}
	if p.UserID != "" && p.UserID == r.OwnerUserID {
		g |= gKeyOwner
	}
	return g
}

// describe names the standings in g for a forbidden message: "owner, admin or env_admin".
func describe(g grant) string {
	var names []string
	for b := grant(1); b <= gLast; b <<= 1 {
		if g&b != 0 {
			names = append(names, b.name())
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// name names one standing.
func (g grant) name() string {
	switch g {
	case gPlatform:
		return "platform admin"
	case gOwner:
		return "owner"
	case gAdmin:
		return "admin"
	case gMember:
		return "member"
	case gEnvAdmin:
		return string(EnvAdmin)
	case gEnvMaker:
		return string(EnvMaker)
	case gEnvUser:
		return string(EnvUser)
	case gEnvViewer:
		return string(EnvViewer)
	case gKeyOwner:
		return "the key's own user"
	}
	return "unknown"
}
