// Package scaletest fills a control-plane store with a large registry in
// realistic proportions, for scale benchmarks: per organization an owner, two
// members, a user key of the owner and an app key, and environments, each
// with its database, three credentials really sealed with the keyring (so
// resolving them works), its succeeded provision operation, five audit events
// and a usage measurement. It writes through the store's Queries in one
// transaction per organization, several at once. Tests and benchmarks import
// it; no production command does.
package scaletest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/nulldriver"
)

// Options says what to seed.
type Options struct {
	// Environments is how many environments to make, PerOrg (default 100)
	// in each organization.
	Environments int
	PerOrg       int
	// Target and Region are where the databases are recorded (default the
	// null driver's "null" in "local"); Driver is the driver name recorded
	// (default "null").
	Target, Region, Driver string
	// Now is the time every row is stamped around (default time.Now).
	Now time.Time
	// Concurrency is how many organizations are written at once (default
	// GOMAXPROCS). SQLite serializes the writes; sealing still overlaps.
	Concurrency int
	// Prefix starts every organization slug (default "scale").
	Prefix string
	// Analyze, when set, refreshes the store's planner statistics: Seed
	// calls it after every AnalyzeEvery environments (default 10,000, in
	// whole organizations) and once at the end, as a bulk load is
	// followed by ANALYZE. A PostgreSQL server without autovacuum (the
	// shared test server runs with it off) otherwise plans on the empty
	// tables' statistics while the registry grows a thousandfold
	// (adr/0024).
	Analyze      func(context.Context) error
	AnalyzeEvery int
}

// Org is one seeded organization.
type Org struct {
	ID, Slug string
	// OwnerToken is a user key of the organization's owner.
	OwnerToken string
	// AppToken is an app key (readwrite) of the environment AppEnv.
	AppToken, AppEnv string
	// Envs are the environments' slugs, oldest first.
	Envs []string
}

// Registry is what Seed made.
type Registry struct {
	Orgs []*Org
	// Took is how long seeding took.
	Took time.Duration
}

// Counts of rows per environment and per organization, as Seed writes them.
const (
	CredentialsPerEnv = 3
	AuditPerEnv       = 5
	MembersPerOrg     = 3
)

// Seed fills s with o.Environments environments (see the package comment),
// sealing credentials with kr, and returns the organizations it made.
func Seed(ctx context.Context, s cp.Store, kr cp.Keyring, o Options) (*Registry, error) {
	// Seeding writes every organization's rows, as bootstrap does (ADR 0027).
	ctx = cp.WithPlatformScope(ctx)
	start := time.Now()
	if o.PerOrg <= 0 {
		o.PerOrg = 100
	}
	if o.Target == "" {
		o.Target, o.Driver = nulldriver.Name, nulldriver.Name
	}
	if o.Driver == "" {
		o.Driver = o.Target
	}
	if o.Region == "" {
		o.Region = "local"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Prefix == "" {
		o.Prefix = "scale"
	}
	if o.AnalyzeEvery <= 0 {
		o.AnalyzeEvery = 10000
	}
	o.Now = o.Now.UTC().Truncate(time.Microsecond)
	nOrgs := (o.Environments + o.PerOrg - 1) / o.PerOrg
	reg := &Registry{Orgs: make([]*Org, nOrgs)}
	work := make(chan int)
	errs := make(chan error, o.Concurrency+1) // each worker and the feeder send at most one
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range o.Concurrency {
		wg.Go(func() {
			for i := range work {
				envs := min(o.PerOrg, o.Environments-i*o.PerOrg)
				org, err := seedOrg(wctx, s, kr, o, i, envs)
				if err != nil {
					errs <- fmt.Errorf("seeding organization %d: %w", i, err)
					cancel()
					return
				}
				reg.Orgs[i] = org
			}
		})
	}
	analyze := func() error {
		if o.Analyze == nil {
			return nil
		}
		if err := o.Analyze(wctx); err != nil {
			return fmt.Errorf("analyzing the store: %w", err)
		}
		return nil
	}
	perAnalyze := max(o.AnalyzeEvery/o.PerOrg, 1)
feed:
	for i := range nOrgs {
		if i > 0 && i%perAnalyze == 0 {
			if err := analyze(); err != nil {
				errs <- err
				cancel()
				break feed
			}
		}
		select {
		case work <- i:
		case <-wctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := analyze(); err != nil {
		return nil, err
	}
	reg.Took = time.Since(start)
	return reg, nil
}

// envType is the type of an organization's j-th environment: of every
// ten, three development, two test, two preview, one staging, one sandbox
// and one production.
func envType(j int) cp.EnvironmentType {
	switch j % 10 {
	case 3, 4:
		return cp.TypeTest
	case 5, 6:
		return cp.TypePreview
	case 7:
		return cp.TypeStaging
	case 8:
		return cp.TypeSandbox
	case 9:
		return cp.TypeProduction
	}
	return cp.TypeDevelopment
}

// newToken returns a random API token shaped as the service's.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // cannot fail since Go 1.24
	return cp.TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// seedOrg writes organization i with envs environments in one transaction.
// Everything is built (and sealed) before the transaction starts, so the
// write lock is held only for the inserts.
func seedOrg(ctx context.Context, s cp.Store, kr cp.Keyring, o Options, i, envs int) (*Org, error) {
	now := o.Now
	at := func(d time.Duration) time.Time { return now.Add(d) }
	org := &cp.Organization{ID: cp.NewID("org"), Slug: fmt.Sprintf("%s-%05d", o.Prefix, i), Name: fmt.Sprintf("Scale %d", i),
		MaxEnvironments: max(envs*2, 1000), CreatedAt: at(-720 * time.Hour), UpdatedAt: at(-720 * time.Hour)}
	out := &Org{ID: org.ID, Slug: org.Slug}
	var users []*cp.User
	var members []*cp.OrgMembership
	for m := range MembersPerOrg {
		u := &cp.User{ID: cp.NewID("usr"), Email: fmt.Sprintf("u%d@%s.example.com", m, org.Slug), Name: fmt.Sprintf("User %d", m), CreatedAt: org.CreatedAt}
		role := cp.OrgMember
		if m == 0 {
			role = cp.OrgOwner
		}
		users = append(users, u)
		members = append(members, &cp.OrgMembership{OrgID: org.ID, UserID: u.ID, Role: role, CreatedAt: org.CreatedAt})
	}
	type envRows struct {
		env   *cp.Environment
		db    *cp.Database
		creds []*cp.Credential
		op    *cp.Operation
		audit []*cp.AuditEvent
	}
	rows := make([]envRows, envs)
	for j := range envs {
		created := at(-time.Duration(envs-j) * time.Minute)
		t := envType(j)
		env := &cp.Environment{ID: cp.NewID("env"), OrgID: org.ID, Slug: fmt.Sprintf("env-%04d", j), Name: fmt.Sprintf("Environment %d", j),
			Type: t, Region: o.Region, Target: o.Target, Status: cp.StatusActive, CreatedBy: users[0].ID,
			CreatedAt: created, UpdatedAt: created}
		if t == cp.TypePreview {
			// Previews expire, a week out: listed by the expiry pass only then.
			exp := at(7 * 24 * time.Hour)
			env.ExpiresAt = &exp
		}
		db := &cp.Database{ID: cp.NewID("db"), EnvironmentID: env.ID, Name: "env_" + strings.ToLower(ulid.Make().String()),
			Driver: o.Driver, Target: o.Target, Region: o.Region, SchemaVersion: 1, ProvisionedAt: &created}
		db.URL = "null.invalid/" + db.Name
		r := envRows{env: env, db: db}
		for _, scope := range drivers.Scopes() {
			c := &cp.Credential{ID: cp.NewID("cred"), DatabaseID: db.ID, Scope: scope, Slot: drivers.SlotA,
				Username: nulldriver.Username(db.Name, scope, drivers.SlotA), Status: cp.CredentialActive, IssuedAt: created}
			if t == cp.TypeProduction {
				// Production credentials live 30 days: scheduled rotation
				// lists them only when they near the end.
				exp := created.Add(720 * time.Hour)
				c.ExpiresAt = &exp
			}
			sealed, err := cp.Seal(ctx, kr, nulldriver.NewSecret(), c.ID, db.ID)
			if err != nil {
				return nil, err
			}
			c.SecretCipher, c.DEKCipher, c.KMSKeyID = sealed.SecretCipher, sealed.DEKCipher, sealed.KeyID
			r.creds = append(r.creds, c)
		}
		r.op = &cp.Operation{ID: cp.NewID("op"), OrgID: org.ID, EnvironmentID: env.ID, Kind: cp.OpProvision, Status: cp.OpSucceeded,
			Step: "done", Attempts: 1, CreatedAt: created, UpdatedAt: created.Add(time.Second)}
		for k, action := range [AuditPerEnv]string{"environment.created", "environment.provisioned", "credential.issued", "credential.issued", "credential.issued"} {
			r.audit = append(r.audit, &cp.AuditEvent{ID: cp.NewID("evt"), OrgID: org.ID, EnvironmentID: env.ID, Actor: users[0].ID,
				Action: action, Target: env.ID, Details: map[string]any{"operation": r.op.ID}, CreatedAt: created.Add(time.Duration(k) * time.Millisecond)})
		}
		rows[j] = r
		out.Envs = append(out.Envs, env.Slug)
	}
	ownerToken, appToken := newToken(), newToken()
	keys := []*cp.APIKey{
		{ID: cp.NewID("key"), OrgID: org.ID, UserID: users[0].ID, Name: "owner", Prefix: ownerToken[:len(cp.TokenPrefix)+8], Hash: cp.HashToken(ownerToken), CreatedAt: org.CreatedAt},
	}
	if envs > 0 {
		keys = append(keys, &cp.APIKey{ID: cp.NewID("key"), OrgID: org.ID, EnvironmentID: rows[0].env.ID, MaxScope: drivers.ScopeReadWrite,
			Name: "app", Prefix: appToken[:len(cp.TokenPrefix)+8], Hash: cp.HashToken(appToken), CreatedAt: org.CreatedAt})
		out.AppToken, out.AppEnv = appToken, rows[0].env.Slug
	}
	out.OwnerToken = ownerToken
	err := s.WithTx(ctx, func(q cp.Queries) error {
		if err := q.CreateOrganization(ctx, org); err != nil {
			return err
		}
		for k, u := range users {
			if err := q.CreateUser(ctx, u); err != nil {
				return err
			}
			if err := q.PutOrgMembership(ctx, members[k]); err != nil {
				return err
			}
		}
		for _, r := range rows {
			if err := q.CreateEnvironment(ctx, r.env); err != nil {
				return err
			}
			if err := q.CreateDatabase(ctx, r.db); err != nil {
				return err
			}
			for _, c := range r.creds {
				if err := q.CreateCredential(ctx, c); err != nil {
					return err
				}
			}
			if err := q.RecordUsage(ctx, r.db.ID, &cp.Usage{SizeBytes: 1 << 20, MeasuredAt: now}); err != nil {
				return err
			}
			if err := q.CreateOperation(ctx, r.op); err != nil {
				return err
			}
			for _, e := range r.audit {
				if err := q.AppendAuditEvent(ctx, e); err != nil {
					return err
				}
			}
		}
		for _, k := range keys {
			if err := q.CreateAPIKey(ctx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
