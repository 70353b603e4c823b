package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	cp "github.com/envplane/envplane/controlplane"
)

// Config is envplane's configuration: a YAML file, overridden by ENVPLANE_*
// environment variables, overridden by flags. Unknown keys are an error.
type Config struct {
	// DataDir holds everything of the embedded default: the SQLite store,
	// the key file, the SQLite target's databases and admin.token.
	DataDir string `mapstructure:"data_dir"`
	Listen  string `mapstructure:"listen"`
	// StoreURL is empty for SQLite at <data_dir>/controlplane.db, a
	// postgres:// URL for PostgreSQL, or a path to an SQLite file.
	StoreURL string `mapstructure:"store_url"`
	// StoreURLFile reads StoreURL from a file (it may hold a password).
	StoreURLFile string `mapstructure:"store_url_file"`
	// StoreMigrateURL, for a PostgreSQL store only, is the URL of the user
	// that applies the migrations (the tables' owner, or a superuser); the
	// user of StoreURL then only serves (adr/0030). Empty: StoreURL's user
	// does both.
	StoreMigrateURL string `mapstructure:"store_migrate_url"`
	// StoreMigrateURLFile reads StoreMigrateURL from a file.
	StoreMigrateURLFile string `mapstructure:"store_migrate_url_file"`
	LogLevel            string `mapstructure:"log_level"`
	// AutoBootstrap makes `serve` create the platform admin on an empty
	// store and write its token to <data_dir>/admin.token.
	AutoBootstrap bool `mapstructure:"auto_bootstrap"`

	Keyring KeyringConfig `mapstructure:"keyring"`

	DefaultTarget string         `mapstructure:"default_target"`
	Targets       []TargetConfig `mapstructure:"targets"`

	// AppMigrations is a directory of NNNN_name.sql migrations applied to
	// every environment database after envplane's own.
	AppMigrations string `mapstructure:"app_migrations"`

	Rotation     RotationConfig     `mapstructure:"rotation"`
	Router       RouterConfig       `mapstructure:"router"`
	Provisioning ProvisioningConfig `mapstructure:"provisioning"`
	Usage        UsageConfig        `mapstructure:"usage"`
	// ReconcileInterval is how often each replica resumes abandoned
	// operations and revokes credentials whose grace ended.
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// Operations leases long-running operations to replicas.
	Operations OperationsConfig `mapstructure:"operations"`
	// MaxEnvironments and MaxStorageMB are the quotas of organizations
	// created without them (storage 0: none).
	MaxEnvironments int `mapstructure:"max_environments"`
	MaxStorageMB    int `mapstructure:"max_storage_mb"`
	// Environments sets when environments expire.
	Environments EnvironmentsConfig `mapstructure:"environments"`
	// People sets sessions, sign-in throttling and invitation links; SMTP
	// the mail server invitations go through (adr/0023).
	People PeopleConfig `mapstructure:"people"`
	SMTP   SMTPConfig   `mapstructure:"smtp"`
	// Rollouts sets the defaults of fleet rollouts (adr/0022).
	Rollouts RolloutsConfig `mapstructure:"rollouts"`
	// Backups sets where backups are kept, and when they are taken.
	Backups BackupsConfig `mapstructure:"backups"`
}

// RolloutsConfig sets what a rollout request leaves out (adr/0022): the
// order of environment types, one list per wave, and how many
// environments migrate at once.
type RolloutsConfig struct {
	Waves       [][]string `mapstructure:"waves"`
	Parallelism int        `mapstructure:"parallelism"`
}

// BackupsConfig sets where backups are kept and the background schedule
// (adr/0021).
type BackupsConfig struct {
	// Dir is the backup store (default <data_dir>/backups), mode 0700.
	Dir string `mapstructure:"dir"`
	// Schedule maps an environment type to how often a backup of each of
	// its active environments is taken; a type absent has none.
	Schedule map[string]time.Duration `mapstructure:"schedule"`
	// Retention maps an environment type to the completed backups kept per
	// environment: at most Count, none older than MaxAge (0: no bound);
	// the newest is always kept.
	Retention map[string]BackupRetentionConfig `mapstructure:"retention"`
}

// BackupRetentionConfig is one environment type's retention.
type BackupRetentionConfig struct {
	Count  int           `mapstructure:"count"`
	MaxAge time.Duration `mapstructure:"max_age"`
}

// EnvironmentsConfig sets when environments expire (adr/0018).
type EnvironmentsConfig struct {
	// TTL maps an environment type to the expiry of new environments of
	// that type that ask for none. Protected, default and production
	// environments never expire.
	TTL map[string]time.Duration `mapstructure:"ttl"`
	// MaxTTL bounds any expiry, counted from now.
	MaxTTL time.Duration `mapstructure:"max_ttl"`
}

// OperationsConfig sets how long an operation stays with the replica that
// runs it (adr/0016). A replica that dies loses its operations once Lease
// has passed without renewal; another replica (or the same one restarted)
// resumes them at its next reconcile pass, so within Lease +
// reconcile_interval (10s by default).
type OperationsConfig struct {
	Lease time.Duration `mapstructure:"lease"`
	// LeaseRenewal is how often a running operation renews its lease; at
	// most half the lease, so one late renewal does not lose it.
	LeaseRenewal time.Duration `mapstructure:"lease_renewal"`
}

// KeyringConfig chooses the key-encryption keyring.
type KeyringConfig struct {
	// Kind is "local" (the default) or "vault".
	Kind string `mapstructure:"kind"`
	// KeyFile is the local keyring's file (default <data_dir>/master.key),
	// generated with mode 0600 on first start. ENVPLANE_MASTER_KEY, when
	// set, holds the keys instead.
	KeyFile string `mapstructure:"key_file"`
	// ReadAlso is "local" while switching to vault: data keys still wrapped
	// by the local keyring keep opening until keys rewrap moves them.
	ReadAlso string             `mapstructure:"read_also"`
	Vault    VaultKeyringConfig `mapstructure:"vault"`
}

// VaultKeyringConfig configures the vault keyring (Transit). The token and
// the AppRole secret id come from files or environment variables, never the
// YAML.
type VaultKeyringConfig struct {
	Address   string `mapstructure:"address"`
	Namespace string `mapstructure:"namespace"`
	// Mount is the Transit mount (default transit); Key the Transit key
	// (default envplane), created on first use when CreateKey is set.
	Mount     string `mapstructure:"mount"`
	Key       string `mapstructure:"key"`
	CreateKey bool   `mapstructure:"create_key"`
	TokenFile string `mapstructure:"token_file"`
	TokenEnv  string `mapstructure:"token_env"`
	AppRole   struct {
		Mount        string `mapstructure:"mount"`
		RoleID       string `mapstructure:"role_id"`
		SecretIDFile string `mapstructure:"secret_id_file"`
		SecretIDEnv  string `mapstructure:"secret_id_env"`
	} `mapstructure:"approle"`
	TLS struct {
		CAFile             string `mapstructure:"ca_file"`
		CertFile           string `mapstructure:"cert_file"`
		KeyFile            string `mapstructure:"key_file"`
		ServerName         string `mapstructure:"server_name"`
		InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
	} `mapstructure:"tls"`
	Timeout time.Duration `mapstructure:"timeout"`
}

// ProvisioningConfig bounds work against targets that are down or hang
// (adr/0017).
type ProvisioningConfig struct {
	// Timeout bounds a provisioning: past it the environment ends failed
	// with the reason, and its cleanup goes on in the background.
	Timeout time.Duration `mapstructure:"timeout"`
	// StepTimeout bounds one attempt of a saga step and one target probe.
	StepTimeout time.Duration `mapstructure:"step_timeout"`
	// TargetCheck is how often an available target is probed; a target
	// that is down is probed with exponential backoff instead.
	TargetCheck time.Duration `mapstructure:"target_check"`
}

// UsageConfig paces the background measurement of databases (adr/0019):
// each is measured every Interval, at most Batch per reconcile pass.
type UsageConfig struct {
	Interval time.Duration `mapstructure:"interval"`
	Batch    int           `mapstructure:"batch"`
}

// RotationConfig is the credential policy.
type RotationConfig struct {
	Grace time.Duration `mapstructure:"grace"`
	// CredentialTTL maps an environment type to the lifetime of its credentials.
	CredentialTTL map[string]time.Duration `mapstructure:"credential_ttl"`
	// MaxLiveCredentials caps active plus rotating credentials per database
	// and scope; MaxIssuedPerHour caps issuance per environment in any
	// hour. 0 turns a cap off.
	MaxLiveCredentials int `mapstructure:"max_live_credentials"`
	MaxIssuedPerHour   int `mapstructure:"max_issued_per_hour"`
}

// RouterConfig tunes the router: its cache, the refresh it asks of
// clients, and its receipts (adr/0011).
type RouterConfig struct {
	// RefreshWindow is the longest refresh_after handed out; RevokeMargin
	// how long a rotated credential outlives the last one handed out for it.
	RefreshWindow time.Duration `mapstructure:"refresh_window"`
	RevokeMargin  time.Duration `mapstructure:"revoke_margin"`
	// CacheSize bounds the cached answers and principals (0 turns the
	// cache off); CacheTTL is the longest an entry is trusted.
	CacheSize int           `mapstructure:"cache_size"`
	CacheTTL  time.Duration `mapstructure:"cache_ttl"`
	// ChangePoll is how often a replica reads the change log; MaxStale how
	// long it serves cached answers when it cannot.
	ChangePoll time.Duration `mapstructure:"change_poll"`
	MaxStale   time.Duration `mapstructure:"max_stale"`
	// Receipts turns resolution receipts on; they are kept ReceiptRetention.
	Receipts         bool          `mapstructure:"receipts"`
	ReceiptRetention time.Duration `mapstructure:"receipt_retention"`
}

// TargetConfig is one place where databases are created.
type TargetConfig struct {
	Name     string `mapstructure:"name"`
	Driver   string `mapstructure:"driver"`
	Region   string `mapstructure:"region"`
	Capacity int    `mapstructure:"capacity"`

	SQLite   SQLiteTargetConfig   `mapstructure:"sqlite"`
	Postgres PostgresTargetConfig `mapstructure:"postgres"`
	Turso    TursoTargetConfig    `mapstructure:"turso"`
}

// SQLiteTargetConfig configures a sqlite target.
type SQLiteTargetConfig struct {
	// Dir holds the databases (default <data_dir>/databases/<target>).
	Dir string `mapstructure:"dir"`
}

// PostgresTargetConfig configures a postgres target. The admin URL holds a
// password, so it comes from a file or an environment variable, never the YAML.
type PostgresTargetConfig struct {
	AdminURLFile string `mapstructure:"admin_url_file"`
	AdminURLEnv  string `mapstructure:"admin_url_env"`
	AppHost      string `mapstructure:"app_host"`
	AppPort      int    `mapstructure:"app_port"`
	AppSSLMode   string `mapstructure:"app_sslmode"`
	// SCRAMIterations is the PBKDF2 iteration count of the SCRAM-SHA-256
	// verifiers envplane computes (default 4096, PostgreSQL's). Secrets are
	// 256 random bits, so fewer iterations weaken nothing and make every
	// password change and login cheaper.
	SCRAMIterations int `mapstructure:"scram_iterations"`
	// BinDir is the directory of pg_dump and pg_restore, which backups and
	// restores run (for example /usr/lib/postgresql/16/bin); empty: PATH.
	BinDir string `mapstructure:"bin_dir"`
}

// TursoTargetConfig configures a turso target; the API token comes from a
// file or an environment variable.
type TursoTargetConfig struct {
	Organization string `mapstructure:"organization"`
	Group        string `mapstructure:"group"`
	BaseURL      string `mapstructure:"base_url"`
	Location     string `mapstructure:"location"`
	TokenFile    string `mapstructure:"token_file"`
	TokenEnv     string `mapstructure:"token_env"`
	// DatabaseURL is the URL applications and envplane connect to, with
	// {hostname} standing for the database's Turso hostname; empty means
	// libsql://{hostname}. Set it when databases are reached through a
	// gateway of your own (or, in tests, through the Platform double's).
	DatabaseURL string `mapstructure:"database_url"`
}

// defaults are the embedded default: everything under ./data, one SQLite target.
func setDefaults(v *viper.Viper) {
	v.SetDefault("data_dir", "./data")
	v.SetDefault("listen", "127.0.0.1:8080")
	v.SetDefault("store_url", "")
	v.SetDefault("store_url_file", "")
	v.SetDefault("store_migrate_url", "")
	v.SetDefault("store_migrate_url_file", "")
	v.SetDefault("log_level", "info")
	v.SetDefault("auto_bootstrap", true)
	v.SetDefault("keyring.kind", "local")
	v.SetDefault("keyring.key_file", "")
	v.SetDefault("keyring.read_also", "")
	// Every vault key has a default, so its ENVPLANE_KEYRING_VAULT_* variable
	// is read (viper reads only the variables of keys it knows).
	for _, k := range []string{"address", "namespace", "mount", "key", "token_file", "token_env",
		"approle.mount", "approle.role_id", "approle.secret_id_file", "approle.secret_id_env",
		"tls.ca_file", "tls.cert_file", "tls.key_file", "tls.server_name"} {
		v.SetDefault("keyring.vault."+k, "")
	}
	v.SetDefault("keyring.vault.create_key", true)
	v.SetDefault("keyring.vault.tls.insecure_skip_verify", false)
	v.SetDefault("keyring.vault.timeout", 10*time.Second)
	v.SetDefault("default_target", "local")
	v.SetDefault("app_migrations", "")
	v.SetDefault("rotation.grace", 15*time.Minute)
	v.SetDefault("rotation.max_live_credentials", 2)
	v.SetDefault("rotation.max_issued_per_hour", 60)
	v.SetDefault("router.refresh_window", time.Minute)
	v.SetDefault("router.revoke_margin", 5*time.Second)
	v.SetDefault("router.cache_size", cp.DefaultCacheSize)
	v.SetDefault("router.cache_ttl", cp.DefaultCacheTTL)
	v.SetDefault("router.change_poll", 250*time.Millisecond)
	v.SetDefault("router.max_stale", 30*time.Second)
	v.SetDefault("router.receipts", true)
	v.SetDefault("router.receipt_retention", 30*24*time.Hour)
	v.SetDefault("provisioning.timeout", 2*time.Minute)
	v.SetDefault("provisioning.step_timeout", 30*time.Second)
	v.SetDefault("provisioning.target_check", 15*time.Second)
	v.SetDefault("usage.interval", 5*time.Minute)
	v.SetDefault("usage.batch", 100)
	v.SetDefault("rollouts.waves", [][]string{{"development", "sandbox", "preview", "trial", "default"}, {"test"}, {"staging"}, {"production"}})
	v.SetDefault("rollouts.parallelism", 4)
	v.SetDefault("reconcile_interval", 5*time.Second)
	v.SetDefault("operations.lease", 5*time.Second)
	v.SetDefault("operations.lease_renewal", time.Second)
	v.SetDefault("max_environments", 100)
	v.SetDefault("max_storage_mb", 0)
	v.SetDefault("environments.ttl", map[string]any{"preview": "168h", "trial": "720h"})
	v.SetDefault("environments.max_ttl", 90*24*time.Hour)
	setPeopleDefaults(v)
	v.SetDefault("backups.dir", "")
	v.SetDefault("backups.schedule", map[string]any{"production": "24h"})
	v.SetDefault("backups.retention", map[string]any{"production": map[string]any{"count": 7, "max_age": "720h"}})
}

// loadConfig reads the configuration: the file named by --config or
// ENVPLANE_CONFIG (if any), then ENVPLANE_* variables, then flags.
func loadConfig(flags *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix("ENVPLANE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, name := range []string{"data_dir", "listen", "store_url", "log_level"} {
		if f := flags.Lookup(strings.ReplaceAll(name, "_", "-")); f != nil {
			if err := v.BindPFlag(name, f); err != nil {
				return nil, err
			}
		}
	}
	path, _ := flags.GetString("config")
	if path == "" {
		path = os.Getenv("ENVPLANE_CONFIG")
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("cannot read config %s: %w", path, err)
		}
	}
	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if len(cfg.Targets) == 0 {
		cfg.Targets = []TargetConfig{{Name: "local", Driver: "sqlite", Region: "local"}}
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = abs
	if cfg.Keyring.KeyFile == "" {
		cfg.Keyring.KeyFile = filepath.Join(cfg.DataDir, "master.key")
	}
	if cfg.Backups.Dir == "" {
		cfg.Backups.Dir = filepath.Join(cfg.DataDir, "backups")
	}
	return &cfg, nil
}

// readSecret returns a secret from a file or an environment variable, trimmed.
func readSecret(file, env, what string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("cannot read %s file: %w", what, err)
		}
		return strings.TrimSpace(string(b)), nil
	case env != "":
		s := os.Getenv(env)
		if s == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty", what, env)
		}
		return s, nil
	}
	return "", fmt.Errorf("%s: set a file or an environment variable", what)
}
