package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/spf13/viper"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/mail"
	"github.com/envplane/envplane/drivers"
)

// adminPasswordEnv names the environment variable that gives bootstrap
// (and serve's auto-bootstrap) the platform admin's first password.
const adminPasswordEnv = "ENVPLANE_ADMIN_PASSWORD"

// PeopleConfig sets sessions, sign-in throttling and invitations (adr/0023).
type PeopleConfig struct {
	// SessionIdle ends a session unused that long; SessionAbsolute ends any
	// session that long after sign-in.
	SessionIdle     time.Duration `mapstructure:"session_idle"`
	SessionAbsolute time.Duration `mapstructure:"session_absolute"`
	// InvitationTTL is how long an invitation link works.
	InvitationTTL time.Duration `mapstructure:"invitation_ttl"`
	// Failed sign-ins per email and per client address before sign-in is
	// refused for Lockout.
	MaxAccountFailures int           `mapstructure:"max_account_failures"`
	MaxAddressFailures int           `mapstructure:"max_address_failures"`
	Lockout            time.Duration `mapstructure:"lockout"`
	// PublicURL is where people reach envplane, for invitation links.
	PublicURL string `mapstructure:"public_url"`
}

// SMTPConfig is the mail server invitations go through. Without a host no
// mail is sent: the API answers each invitation's link to the inviter.
type SMTPConfig struct {
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
	From string `mapstructure:"from"`
	// Security is starttls (default), tls (implicit, port 465) or none.
	Security string `mapstructure:"security"`
	// Username, when set, authenticates with the password read from
	// PasswordFile or the environment variable PasswordEnv.
	Username     string `mapstructure:"username"`
	PasswordFile string `mapstructure:"password_file"`
	PasswordEnv  string `mapstructure:"password_env"`
}

func setPeopleDefaults(v *viper.Viper) {
	d := cp.DefaultPeopleConfig()
	v.SetDefault("people.session_idle", d.SessionIdle)
	v.SetDefault("people.session_absolute", d.SessionAbsolute)
	v.SetDefault("people.invitation_ttl", d.InvitationTTL)
	v.SetDefault("people.max_account_failures", d.MaxAccountFailures)
	v.SetDefault("people.max_address_failures", d.MaxAddressFailures)
	v.SetDefault("people.lockout", d.Lockout)
	v.SetDefault("people.public_url", "")
	for _, k := range []string{"host", "from", "username", "password_file", "password_env"} {
		v.SetDefault("smtp."+k, "")
	}
	v.SetDefault("smtp.port", 587)
	v.SetDefault("smtp.security", string(mail.StartTLS))
}

// configurePeople applies the people and smtp sections to svc.
func configurePeople(svc *cp.Service, cfg *Config, now func() time.Time) error {
	pc := cfg.People
	if pc.SessionIdle <= 0 || pc.SessionAbsolute <= 0 || pc.InvitationTTL <= 0 || pc.Lockout <= 0 {
		return errors.New("people.session_idle, session_absolute, invitation_ttl and lockout must be positive")
	}
	if pc.MaxAccountFailures < 1 || pc.MaxAddressFailures < 1 {
		return errors.New("people.max_account_failures and max_address_failures must be at least 1")
	}
	p := &svc.People
	p.SessionIdle, p.SessionAbsolute, p.InvitationTTL = pc.SessionIdle, pc.SessionAbsolute, pc.InvitationTTL
	p.MaxAccountFailures, p.MaxAddressFailures, p.Lockout = pc.MaxAccountFailures, pc.MaxAddressFailures, pc.Lockout
	p.PublicURL = "http://" + cfg.Listen
	if pc.PublicURL != "" {
		if u, err := url.Parse(pc.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("people.public_url must be an http(s) URL")
		}
		p.PublicURL = pc.PublicURL
	}
	sc := cfg.SMTP
	if sc.Host == "" {
		return nil
	}
	m, err := mail.New(sc.Host, sc.Port, sc.From, mail.Security(sc.Security))
	if err != nil {
		return err
	}
	m.Now = now
	if sc.Username != "" {
		pw, err := readSecret(sc.PasswordFile, sc.PasswordEnv, "smtp password")
		if err != nil {
			return err
		}
		m.Username, m.Password = sc.Username, drivers.Secret(pw)
	}
	p.Mailer = m
	return nil
}

// adminPassword returns the platform admin's first password from file, or
// else from ENVPLANE_ADMIN_PASSWORD; "" when neither gives one.
func adminPassword(file string) (drivers.Secret, error) {
	if file != "" {
		pw, err := readSecret(file, "", "admin password")
		return drivers.Secret(pw), err
	}
	return drivers.Secret(os.Getenv(adminPasswordEnv)), nil
}

// firstPassword sets the platform admin's first password when pw is given
// and the admin has none, and says which happened on w.
func firstPassword(ctx context.Context, svc *cp.Service, email string, pw drivers.Secret, w io.Writer) error {
	if pw == "" {
		return nil
	}
	set, err := svc.SetFirstPassword(ctx, email, pw)
	if err != nil {
		return fmt.Errorf("cannot set the admin's password: %w", err)
	}
	if set {
		fmt.Fprintln(w, "the platform admin's password is set: sign in with envctl login")
	} else {
		fmt.Fprintln(w, "the platform admin already has a password; it is left unchanged")
	}
	return nil
}
