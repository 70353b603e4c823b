package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/backupstore"
	"github.com/envplane/envplane/controlplane/keyring/chain"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/keyring/vault"
	pgstore "github.com/envplane/envplane/controlplane/store/postgres"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
	tursodriver "github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/migrations"
)

// app is everything a command needs, built from the configuration.
type app struct {
	cfg          *Config
	logger       *slog.Logger
	store        cp.Store
	closeKeyring func() error
	svc          *cp.Service
	embedded     bool
	// clock is the store's clock the service runs on, when the store
	// tells its time (PostgreSQL); serve keeps it synced.
	clock *cp.StoreClock
}

// closer is implemented by drivers that hold connections (the PostgreSQL admin pool).
type closer interface{ Close() }

// newLogger returns the JSON logger at the configured level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log_level %q", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// openStore opens the configured control-plane store, applying its migrations.
func openStore(ctx context.Context, cfg *Config) (cp.Store, bool, error) {
	url, err := urlOrFile(cfg.StoreURL, cfg.StoreURLFile, "store_url_file")
	if err != nil {
		return nil, false, err
	}
	migrateURL, err := urlOrFile(cfg.StoreMigrateURL, cfg.StoreMigrateURLFile, "store_migrate_url_file")
	if err != nil {
		return nil, false, err
	}
	postgres := strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
	if migrateURL != "" && !postgres {
		return nil, false, errors.New("store_migrate_url applies only to a PostgreSQL store_url")
	}
	switch {
	case postgres:
		var opts []pgstore.Option
		if migrateURL != "" {
			opts = append(opts, pgstore.MigrateAs(migrateURL))
		}
		s, err := pgstore.Open(ctx, url, opts...)
		if err != nil {
			return nil, false, fmt.Errorf("cannot open the PostgreSQL store: %w", err)
		}
		return s, false, nil
	case url == "":
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, false, fmt.Errorf("cannot create data_dir: %w", err)
		}
		s, err := sqlitestore.Open(ctx, filepath.Join(cfg.DataDir, "controlplane.db"))
		if err != nil {
			return nil, false, fmt.Errorf("cannot open the SQLite store: %w", err)
		}
		return s, true, nil
	default:
		s, err := sqlitestore.Open(ctx, strings.TrimPrefix(url, "sqlite://"))
		if err != nil {
			return nil, false, fmt.Errorf("cannot open the SQLite store: %w", err)
		}
		return s, false, nil
	}
}

// urlOrFile returns url, or the contents of file when it is set.
func urlOrFile(url, file, what string) (string, error) {
	if file == "" {
		return url, nil
	}
	return readSecret(file, "", what)
}

// openKeyring returns the configured keyring and a function that releases
// it: local (ENVPLANE_MASTER_KEY, or the key file, generated on first start
// and followed while serving), vault, or vault reading local too while
// switching (keyring.read_also: local).
func openKeyring(ctx context.Context, cfg *Config, logger *slog.Logger) (cp.Keyring, func() error, error) {
	none := func() error { return nil }
	switch cfg.Keyring.Kind {
	case "local":
		if cfg.Keyring.ReadAlso != "" {
			return nil, nil, errors.New("keyring.read_also applies only to kind vault")
		}
		kr, err := openLocal(cfg, logger)
		return kr, none, err
	case "vault":
		vk, err := openVault(ctx, cfg.Keyring.Vault, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("keyring.vault: %w", err)
		}
		switch cfg.Keyring.ReadAlso {
		case "":
			return vk, vk.Close, nil
		case "local":
			lk, err := openLocal(cfg, logger)
			if err != nil {
				return nil, nil, errors.Join(err, vk.Close())
			}
			ch, err := chain.New(vk, lk)
			if err != nil {
				return nil, nil, errors.Join(err, vk.Close())
			}
			return ch, vk.Close, nil
		}
		return nil, nil, fmt.Errorf("keyring.read_also %q is not supported (use local)", cfg.Keyring.ReadAlso)
	}
	return nil, nil, fmt.Errorf("keyring.kind %q is not supported (use local or vault)", cfg.Keyring.Kind)
}

// openLocal returns the local keyring: ENVPLANE_MASTER_KEY when set (its
// versions change only with the variable), else the key file, generated on
// first start and re-read when another process changes it.
func openLocal(cfg *Config, logger *slog.Logger) (cp.Keyring, error) {
	if spec := os.Getenv("ENVPLANE_MASTER_KEY"); spec != "" {
		return local.Parse(spec)
	}
	kr, created, err := local.OpenFile(cfg.Keyring.KeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("generated a master key file", "path", cfg.Keyring.KeyFile)
	}
	return kr, nil
}

// openVault builds the vault keyring. It does no I/O: a Vault that is down
// or sealed does not stop envplane from starting.
func openVault(ctx context.Context, vc VaultKeyringConfig, logger *slog.Logger) (*vault.Keyring, error) {
	vcfg := vault.Config{
		Address: vc.Address, Namespace: vc.Namespace, Mount: vc.Mount, Key: vc.Key, CreateKey: vc.CreateKey,
		TLS:     vault.TLS{CAFile: vc.TLS.CAFile, CertFile: vc.TLS.CertFile, KeyFile: vc.TLS.KeyFile, ServerName: vc.TLS.ServerName, InsecureSkipVerify: vc.TLS.InsecureSkipVerify},
		Timeout: vc.Timeout,
		Logger:  logger,
	}
	switch {
	case vc.AppRole.RoleID != "":
		secretID, err := readSecret(vc.AppRole.SecretIDFile, vc.AppRole.SecretIDEnv, "vault approle secret id")
		if err != nil {
			return nil, err
		}
		vcfg.AppRole = vault.AppRole{Mount: vc.AppRole.Mount, RoleID: vc.AppRole.RoleID, SecretID: drivers.Secret(secretID)}
	default:
		token, err := readSecret(vc.TokenFile, vc.TokenEnv, "vault token")
		if err != nil {
			return nil, err
		}
		vcfg.Token = drivers.Secret(token)
	}
	return vault.New(ctx, vcfg)
}

// buildTargets constructs each configured target's driver, reading the
// service's clock, so that issue, expiry and revocation agree everywhere.
// crash is the crash-test hook (nil in production builds).
func buildTargets(ctx context.Context, cfg *Config, now func() time.Time, crash func(point string)) ([]*cp.Target, error) {
	var out []*cp.Target
	seen := map[string]bool{}
	for i, tc := range cfg.Targets {
		if tc.Name == "" || seen[tc.Name] {
			return nil, fmt.Errorf("targets[%d]: name is required and must be unique", i)
		}
		seen[tc.Name] = true
		d, err := buildDriver(ctx, cfg, tc, now, crash)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", tc.Name, err)
		}
		out = append(out, &cp.Target{Name: tc.Name, Region: tc.Region, Driver: d, Capacity: tc.Capacity})
	}
	return out, nil
}

func buildDriver(ctx context.Context, cfg *Config, tc TargetConfig, now func() time.Time, crash func(point string)) (drivers.Driver, error) {
	switch tc.Driver {
	case "sqlite":
		dir := tc.SQLite.Dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "databases", tc.Name)
		}
		return sqlitedriver.New(sqlitedriver.Config{Dir: dir, Now: now, CrashPoint: crash})
	case "postgres":
		pc := tc.Postgres
		url, err := readSecret(pc.AdminURLFile, pc.AdminURLEnv, "postgres.admin_url")
		if err != nil {
			return nil, err
		}
		return pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(url), AppHost: pc.AppHost, AppPort: pc.AppPort, AppSSLMode: pc.AppSSLMode, SCRAMIterations: pc.SCRAMIterations, CrashPoint: crash, BinDir: pc.BinDir})
	case "turso":
		tc := tc.Turso
		token, err := readSecret(tc.TokenFile, tc.TokenEnv, "turso.token")
		if err != nil {
			return nil, err
		}
		var databaseURL func(hostname string) string
		if tc.DatabaseURL != "" {
			if !strings.Contains(tc.DatabaseURL, "{hostname}") {
				return nil, errors.New("turso.database_url must contain {hostname}")
			}
			databaseURL = func(hostname string) string { return strings.ReplaceAll(tc.DatabaseURL, "{hostname}", hostname) }
		}
		return tursodriver.New(tursodriver.Config{Organization: tc.Organization, Group: tc.Group, Location: tc.Location, BaseURL: tc.BaseURL, Token: drivers.Secret(token), DatabaseURL: databaseURL, Now: now})
	}
	return nil, fmt.Errorf("unknown driver %q", tc.Driver)
}

// newApp builds the store, keyring, targets and service from cfg.
func newApp(ctx context.Context, cfg *Config, logOut io.Writer) (*app, error) {
	logger, err := newLogger(logOut, cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	store, embedded, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a, err := assemble(ctx, cfg, logger, store)
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	a.embedded = embedded
	return a, nil
}

func assemble(ctx context.Context, cfg *Config, logger *slog.Logger, store cp.Store) (*app, error) {
	kr, closeKeyring, err := openKeyring(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	a, err := assembleService(ctx, cfg, logger, store, kr)
	if err != nil {
		return nil, errors.Join(err, closeKeyring())
	}
	a.closeKeyring = closeKeyring
	return a, nil
}

// assembleService builds the targets and the service around kr.
func assembleService(ctx context.Context, cfg *Config, logger *slog.Logger, store cp.Store, kr cp.Keyring) (*app, error) {
	// One clock for the service, the drivers and the schema initializer:
	// the store's, when replicas share it (adr/0028), so that leases,
	// expiries and schedules are measured alike by every replica whatever
	// its own clock says.
	now := localClock()
	var clock *cp.StoreClock
	if cr, ok := store.(cp.ClockReader); ok {
		clock = cp.NewStoreClock(cr.Clock, now)
		if err := clock.Sync(ctx); err != nil {
			return nil, err
		}
		now = clock.Now
	}
	crash := crashHook(logger)
	targets, err := buildTargets(ctx, cfg, now, crash)
	if err != nil {
		return nil, err
	}
	svc := cp.New(store, kr, targets, cfg.DefaultTarget)
	svc.Now = now
	if _, ok := svc.Targets[cfg.DefaultTarget]; !ok {
		return nil, fmt.Errorf("default_target %q is not among the targets", cfg.DefaultTarget)
	}
	svc.Logger = logger
	if err := configureOperations(svc, cfg.Operations); err != nil {
		return nil, err
	}
	svc.CrashPoint = crash
	svc.Grace = cfg.Rotation.Grace
	svc.MaxLiveCredentials = cfg.Rotation.MaxLiveCredentials
	svc.MaxIssuedPerHour = cfg.Rotation.MaxIssuedPerHour
	if err := configureRouter(svc, cfg.Router); err != nil {
		return nil, err
	}
	if pc := cfg.Provisioning; pc.Timeout <= 0 || pc.StepTimeout <= 0 || pc.TargetCheck <= 0 {
		return nil, errors.New("provisioning.timeout, step_timeout and target_check must be positive")
	}
	svc.ProvisionTimeout = cfg.Provisioning.Timeout
	svc.StepTimeout = cfg.Provisioning.StepTimeout
	svc.TargetCheck = cfg.Provisioning.TargetCheck
	if cfg.Usage.Interval <= 0 || cfg.Usage.Batch <= 0 {
		return nil, errors.New("usage.interval and usage.batch must be positive")
	}
	svc.UsageInterval, svc.UsageBatch = cfg.Usage.Interval, cfg.Usage.Batch
	if err := configureRollouts(svc, cfg.Rollouts); err != nil {
		return nil, err
	}
	svc.DefaultMaxEnvironments = cfg.MaxEnvironments
	if err := configureExpiry(svc, cfg); err != nil {
		return nil, err
	}
	if err := configurePeople(svc, cfg, now); err != nil {
		return nil, err
	}
	if err := configureBackups(svc, cfg.Backups); err != nil {
		return nil, err
	}
	for typ, ttl := range cfg.Rotation.CredentialTTL {
		t := cp.EnvironmentType(typ)
		if !t.Valid() {
			return nil, fmt.Errorf("rotation.credential_ttl: unknown environment type %q", typ)
		}
		svc.CredentialTTL[t] = ttl
	}
	svc.Schema = &dataplane.Initializer{System: migrations.DataPlane(), Now: now}
	if cfg.AppMigrations != "" {
		if _, err := os.Stat(cfg.AppMigrations); err != nil {
			return nil, fmt.Errorf("app_migrations: %w", err)
		}
		svc.Schema.App = os.DirFS(cfg.AppMigrations)
	}
	return &app{cfg: cfg, logger: logger, store: store, svc: svc, clock: clock}, nil
}

// configureOperations applies the operation leases, refusing a renewal too
// slow to keep a lease.
func configureOperations(svc *cp.Service, oc OperationsConfig) error {
	switch {
	case oc.Lease <= 0 || oc.LeaseRenewal <= 0:
		return errors.New("operations.lease and operations.lease_renewal must be positive")
	case oc.LeaseRenewal > oc.Lease/2:
		return errors.New("operations.lease_renewal must be at most half of operations.lease")
	}
	svc.Lease, svc.LeaseRenewal = oc.Lease, oc.LeaseRenewal
	return nil
}

// configureRouter applies the router's settings, refusing those that would
// break the rotation contract.
func configureRouter(svc *cp.Service, rc RouterConfig) error {
	switch {
	case rc.RefreshWindow < time.Second:
		return errors.New("router.refresh_window must be at least 1s")
	case rc.RevokeMargin < 0:
		return errors.New("router.revoke_margin must not be negative")
	case rc.CacheSize < 0:
		return errors.New("router.cache_size must not be negative")
	case rc.CacheTTL <= 0 || rc.ChangePoll <= 0 || rc.MaxStale <= 0 || rc.ReceiptRetention <= 0:
		return errors.New("router.cache_ttl, change_poll, max_stale and receipt_retention must be positive")
	case rc.ChangePoll > rc.MaxStale:
		return errors.New("router.change_poll must not exceed router.max_stale")
	}
	svc.RefreshWindow, svc.RevokeMargin = rc.RefreshWindow, rc.RevokeMargin
	svc.ChangePoll, svc.MaxStale = rc.ChangePoll, rc.MaxStale
	svc.ReceiptRetention = rc.ReceiptRetention
	svc.ConfigureCache(rc.CacheSize, rc.CacheTTL)
	svc.EnableReceipts(rc.Receipts)
	return nil
}

func (a *app) close() error {
	a.svc.Shutdown()
	for _, t := range a.svc.Targets {
		if c, ok := t.Driver.(closer); ok {
			c.Close()
		}
	}
	return errors.Join(a.closeKeyring(), a.store.Close())
}

// configureExpiry sets the organizations' default storage quota and the
// environments' expiry policy; an unknown type, a type that never expires
// or a ttl out of (0, max_ttl] is an error.
func configureExpiry(svc *cp.Service, cfg *Config) error {
	if cfg.MaxStorageMB < 0 || cfg.MaxStorageMB > cp.MaxStorageQuotaMB {
		return fmt.Errorf("max_storage_mb: must be between 0 and %d", cp.MaxStorageQuotaMB)
	}
	svc.DefaultMaxStorageMB = cfg.MaxStorageMB
	ec := cfg.Environments
	if ec.MaxTTL <= 0 {
		return errors.New("environments.max_ttl must be positive")
	}
	svc.MaxEnvironmentTTL = ec.MaxTTL
	for typ, ttl := range ec.TTL {
		t := cp.EnvironmentType(typ)
		switch {
		case !t.Valid():
			return fmt.Errorf("environments.ttl: unknown environment type %q", typ)
		case t == cp.TypeDefault || t == cp.TypeProduction:
			return fmt.Errorf("environments.ttl: %s environments never expire", typ)
		case ttl <= 0 || ttl > ec.MaxTTL:
			return fmt.Errorf("environments.ttl.%s: must be positive and at most environments.max_ttl", typ)
		}
		svc.EnvironmentTTL[t] = ttl
	}
	return nil
}

// configureRollouts sets the rollout defaults: known types, each in one
// wave, and a parallelism from 1 to controlplane.MaxRolloutParallelism.
func configureRollouts(svc *cp.Service, cfg RolloutsConfig) error {
	waves := make([][]cp.EnvironmentType, len(cfg.Waves))
	for i, w := range cfg.Waves {
		for _, t := range w {
			waves[i] = append(waves[i], cp.EnvironmentType(t))
		}
	}
	if err := cp.CheckRolloutWaves(waves); err != nil {
		return fmt.Errorf("rollouts.waves: %w", err)
	}
	if cfg.Parallelism <= 0 || cfg.Parallelism > cp.MaxRolloutParallelism {
		return fmt.Errorf("rollouts.parallelism must be from 1 to %d", cp.MaxRolloutParallelism)
	}
	svc.RolloutWaves, svc.RolloutParallelism = waves, cfg.Parallelism
	return nil
}

// configureBackups opens the backup store and applies the schedule and
// retention; an unknown type or a bound that is not positive is an error.
func configureBackups(svc *cp.Service, bc BackupsConfig) error {
	st, err := backupstore.NewDir(bc.Dir)
	if err != nil {
		return fmt.Errorf("backups.dir: %w", err)
	}
	svc.Backups = st
	svc.BackupSchedule = map[cp.EnvironmentType]time.Duration{}
	for typ, every := range bc.Schedule {
		t := cp.EnvironmentType(typ)
		if !t.Valid() {
			return fmt.Errorf("backups.schedule: unknown environment type %q", typ)
		}
		if every <= 0 {
			return fmt.Errorf("backups.schedule.%s: must be positive", typ)
		}
		svc.BackupSchedule[t] = every
	}
	svc.BackupRetention = map[cp.EnvironmentType]cp.BackupRetention{}
	for typ, r := range bc.Retention {
		t := cp.EnvironmentType(typ)
		if !t.Valid() {
			return fmt.Errorf("backups.retention: unknown environment type %q", typ)
		}
		if r.Count < 0 || r.MaxAge < 0 {
			return fmt.Errorf("backups.retention.%s: count and max_age must not be negative", typ)
		}
		svc.BackupRetention[t] = cp.BackupRetention{Count: r.Count, MaxAge: r.MaxAge}
	}
	return nil
}
