package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/drivers"
)

func checkName(name string) error {
	if !drivers.ValidDatabaseName(name) {
		return fmt.Errorf("postgres: %q is not a generated database name (env_ and 26 lowercase characters)", name)
	}
	return nil
}

func checkScopeSlot(scope drivers.Scope, slot drivers.Slot) error {
	if !scope.Valid() {
		return fmt.Errorf("postgres: scope %q: %w", scope, drivers.ErrUnsupported)
	}
	if !slot.Valid() {
		return fmt.Errorf("postgres: slot %q: %w", slot, drivers.ErrUnsupported)
	}
	return nil
}

// ownerRole is the NOLOGIN role that owns the database's schema and every
// object migrations create in it.
func ownerRole(db string) string { return db + "_owner" }

// loginRole is the role of one scope's slot, e.g. env_…_readwrite_b: at most
// 42 bytes, and two per scope, so poolers keep a bounded set of pools.
func loginRole(db string, scope drivers.Scope, slot drivers.Slot) string {
	return db + "_" + string(scope) + "_" + string(slot)
}

// slotRoles returns both slots' roles of a scope.
func slotRoles(db string, scope drivers.Scope) []string {
	return []string{loginRole(db, scope, drivers.SlotA), loginRole(db, scope, drivers.SlotB)}
}

// allRoles returns the six login roles and then the owner role: the order in
// which they can be dropped.
func allRoles(db string) []string {
	var roles []string
	for _, s := range drivers.Scopes() {
		roles = append(roles, slotRoles(db, s)...)
	}
	return append(roles, ownerRole(db))
}

// ident quotes one identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// idents quotes identifiers into a comma-separated list.
func idents(names ...string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += ident(n)
	}
	return out
}
