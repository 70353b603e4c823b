package controlplane

import "context"

// StoreScope is which organizations' rows a store call may see. The PostgreSQL
// store enforces it with row-level security (ADR 0027): it sets the scope
// in every transaction, and a row outside it is invisible, as if absent.
// A context that carries no scope sees no organization's rows at all: a
// forgotten scope fails closed, never open. The SQLite store ignores it.
type StoreScope struct {
	// OrgID is the one organization an org scope sees.
	OrgID string
	// Platform marks the platform scope, which sees every organization.
	Platform bool
}

// scopeKey is the context key of the store scope.
type scopeKey struct{}

// WithOrgScope returns ctx scoped to the organization orgID: store calls
// made with it see that organization's rows and none of another's. It is
// set where authorization resolved the organization (orgAccess, the
// router's route, an operation's or a rollout's own organization).
func WithOrgScope(ctx context.Context, orgID string) context.Context {
	return context.WithValue(ctx, scopeKey{}, StoreScope{OrgID: orgID})
}

// WithPlatformScope returns ctx allowed to see every organization. Only
// platform-wide work takes it, each at one named place: authentication
// (which finds a key or session before any organization is known), the
// background passes of Tick (operations, rotation, expiry, usage, backups,
// rollouts, pruning), the change log, keyring rewraps, placement, the
// platform admin's listings and the operator commands. Nothing that
// serves one organization's request may use it.
func WithPlatformScope(ctx context.Context) context.Context {
	return context.WithValue(ctx, scopeKey{}, StoreScope{Platform: true})
}

// StoreScopeOf returns the scope ctx carries; ok is false when it carries
// none, and then the store sees no organization's rows.
func StoreScopeOf(ctx context.Context) (s StoreScope, ok bool) {
	s, ok = ctx.Value(scopeKey{}).(StoreScope)
	return s, ok
}
