package dataplane

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/drivers"
)

// Rebind makes a database cloned from src belong to owner, before Apply runs
// on it. A clone carries its source's meta row, which names the source's
// environment, and — when only the schema was copied — an empty ledger beside
// tables that already exist. Rebind copies the source's ledger into a clone
// whose ledger is empty, so applied migrations are not run again, then
// replaces the meta row with owner. Idempotent.
func (in *Initializer) Rebind(ctx context.Context, dst *sql.DB, dstDialect drivers.Dialect, src *sql.DB, owner Owner) error {
	if err := createLedger(ctx, dst, dstDialect); err != nil {
		return err
	}
	have, err := readLedger(ctx, dst)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		srcLedger, err := readLedger(ctx, src)
		if err != nil {
			return fmt.Errorf("cannot read the source's ledger: %w", err)
		}
		for _, m := range srcLedger {
			if _, err := dst.ExecContext(ctx, insertLedgerSQL(dstDialect), ledgerArgs(m)...); err != nil {
				return fmt.Errorf("cannot copy the source's ledger: %w", err)
			}
		}
	}
	got, ok, err := readOwner(ctx, dst, dstDialect)
	if err != nil || !ok || got == owner {
		// No owner row yet (Apply writes it) or already ours.
		return err
	}
	if _, err := dst.ExecContext(ctx, `DELETE FROM `+MetaTable); err != nil {
		return fmt.Errorf("cannot clear the copied owner: %w", err)
	}
	return claimOwner(ctx, dst, dstDialect, owner, in.now().UTC())
}
