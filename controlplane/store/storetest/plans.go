package storetest

import (
	"context"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// Pass is one store call that a background pass makes on every tick (or
// that every request of a hot path makes), and what its query plan must
// show for it to cost in proportion to the rows it returns, not to the size
// of the registry. Each store's tests run Call through a recording Queries,
// EXPLAIN what it sent on a seeded store, and check the plan.
type Pass struct {
	Name string
	Call func(ctx context.Context, q controlplane.Queries) error
	// Indexes must each appear in the plan of the statement.
	Indexes []string
	// Whole names the tables the statement may read whole (they hold a row
	// per organization or per target, not per environment).
	Whole []string
}

// LargeTables hold rows per environment, credential, operation or event:
// no plan may read one whole, except through a partial index that holds
// only the work that is due (see Pass.Indexes).
func LargeTables() []string {
	return []string{"environments", "environment_databases", "database_credentials", "operations",
		"audit_events", "changes", "router_receipts", "idempotency_records", "api_keys", "org_members",
		"environment_members"}
}

// Passes lists the store calls of the background passes (reconciler,
// revocation, scheduled rotation, expiry, usage, metrics, placement, the
// change log, receipts, idempotency pruning) and of the environment list,
// as they are made at now. target is a target that holds databases; orgID an
// organization with environments.
func Passes(now time.Time, target, orgID string) []Pass {
	return []Pass{
		{Name: "ClaimOperations", Indexes: []string{"operations_unfinished"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ClaimOperations(ctx, "explain", now, now.Add(time.Minute), 10)
			return err
		}},
		{Name: "ListCredentialsDue", Indexes: []string{"database_credentials_rotating_expires"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListCredentialsDue(ctx, now, 100)
			return err
		}},
		{Name: "ListCredentialsExpiring", Indexes: []string{"database_credentials_active_expires"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListCredentialsExpiring(ctx, now.Add(24*time.Hour), 100)
			return err
		}},
		{Name: "ListEnvironmentsExpiring", Indexes: []string{"environments_live_expiry"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListEnvironmentsExpiring(ctx, now.Add(24*time.Hour), false, 100)
			return err
		}},
		{Name: "ListEnvironmentsExpiringUnnoticed", Indexes: []string{"environments_live_expiry"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListEnvironmentsExpiring(ctx, now.Add(24*time.Hour), true, 100)
			return err
		}},
		{Name: "ClaimUsageDue", Indexes: []string{"environment_databases_target_usage_due"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ClaimUsageDue(ctx, now, now.Add(5*time.Minute), []string{target}, 100)
			return err
		}},
		{Name: "ListBackupsDue", Indexes: []string{"environments_backup_due"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListBackupsDue(ctx, controlplane.TypeProduction, []string{target}, now.Add(-24*time.Hour), 10)
			return err
		}},
		{Name: "SumUsageByOrg", Whole: []string{"org_target_usage", "organizations"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.SumUsageByOrg(ctx)
			return err
		}},
		{Name: "CountDatabasesByTarget", Whole: []string{"org_target_usage"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.CountDatabasesByTarget(ctx)
			return err
		}},
		{Name: "DeleteChangesBefore", Indexes: []string{"changes_created"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.DeleteChangesBefore(ctx, now.Add(-24*time.Hour))
			return err
		}},
		{Name: "ListChanges", Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.ListChanges(ctx, 1000, 100)
			return err
		}},
		{Name: "LastChange", Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.LastChange(ctx)
			return err
		}},
		{Name: "DeleteReceiptsBefore", Indexes: []string{"router_receipts_last"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.DeleteReceiptsBefore(ctx, now.Add(-720*time.Hour))
			return err
		}},
		{Name: "DeleteIdempotencyRecordsBefore", Indexes: []string{"idempotency_records_created"}, Call: func(ctx context.Context, q controlplane.Queries) error {
			_, err := q.DeleteIdempotencyRecordsBefore(ctx, now.Add(-24*time.Hour))
			return err
		}},
		{Name: "ListEnvironments", Call: func(ctx context.Context, q controlplane.Queries) error {
			_, _, err := q.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: orgID}, controlplane.Page{})
			return err
		}},
		{Name: "ListEnvironmentDatabases", Call: func(ctx context.Context, q controlplane.Queries) error {
			envs, _, err := q.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: orgID}, controlplane.Page{})
			if err != nil {
				return err
			}
			ids := make([]string, len(envs))
			for i, e := range envs {
				ids[i] = e.ID
			}
			_, err = q.ListEnvironmentDatabases(ctx, ids)
			return err
		}},
	}
}
