package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/drivers"
)

// savedSession is what `envctl login` keeps in the user's configuration
// directory (mode 0600): the session token and where it works.
type savedSession struct {
	URL          string `json:"url"`
	Token        string `json:"token"`
	SessionID    string `json:"session_id"`
	Email        string `json:"email"`
	Organization string `json:"organization,omitempty"`
	Environment  string `json:"environment,omitempty"`
}

// sessionPath is the session file: $ENVPLANE_CONFIG_DIR/session.json, by
// default os.UserConfigDir()/envplane/session.json.
func (a *app) sessionPath() (string, error) {
	dir := a.getenv("ENVPLANE_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("cannot find the configuration directory: %w", err)
		}
		dir = filepath.Join(base, "envplane")
	}
	return filepath.Join(dir, "session.json"), nil
}

// loadSession reads the saved session, if any; a missing or unreadable
// file is no session.
func (a *app) loadSession() {
	path, err := a.sessionPath()
	if err != nil {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var s savedSession
	if json.Unmarshal(b, &s) == nil && strings.HasPrefix(s.Token, cp.SessionPrefix) {
		a.saved = &s
	}
}

// saveSession writes s to the session file, readable by the user only.
func (a *app) saveSession(s *savedSession) error {
	path, err := a.sessionPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cannot make the configuration directory: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("cannot save the session: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// token is the credential envctl sends: $ENVPLANE_TOKEN (an API key, for
// scripts) when set, else the saved session's for the same URL.
func (a *app) token() string {
	if t := a.getenv("ENVPLANE_TOKEN"); t != "" {
		return t
	}
	if a.saved != nil && a.saved.URL == a.url {
		return a.saved.Token
	}
	return ""
}

// needSession returns the saved session the client is using, or a usage
// error saying to sign in.
func (a *app) needSession() (*savedSession, error) {
	if a.saved == nil || a.client.Token != a.saved.Token {
		return nil, usageError{errors.New("no session: sign in with envctl login (ENVPLANE_TOKEN, an API key, has no session)")}
	}
	return a.saved, nil
}

// lineReader reads the answers to prompts from stdin, one line each.
type lineReader struct{ r *bufio.Reader }

func (l *lineReader) line() (string, error) {
	s, err := l.r.ReadString('\n')
	if err != nil && (err != io.EOF || s == "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// secret reads a secret: typed without echo on a terminal, else the next line of stdin.
func (a *app) secret(in *lineReader, prompt string) (drivers.Secret, error) {
	if f, ok := a.stdin.(*os.File); ok && isTerminal(a.stdin) {
		fmt.Fprint(a.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		return drivers.Secret(strings.TrimSpace(string(b))), err
	}
	s, err := in.line()
	if err != nil {
		return "", fmt.Errorf("cannot read %s from stdin: %w", strings.TrimSuffix(strings.ToLower(prompt), ": "), err)
	}
	return drivers.Secret(strings.TrimSpace(s)), nil
}

// readSecretFile reads a secret from a file, trimmed.
func readSecretFile(path string) (drivers.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, err)
	}
	return drivers.Secret(strings.TrimSpace(string(b))), nil
}

func (a *app) loginCommand() *cobra.Command {
	var email, passwordFile, totp, recovery string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with email, password and (when enrolled) a TOTP code; keeps the session in the configuration directory",
		Long: `Sign in and keep the session token in os.UserConfigDir()/envplane/session.json
(mode 0600; $ENVPLANE_CONFIG_DIR overrides the directory). The password is
read from --password-file, typed without echo on a terminal, or read as the
first line of stdin; a TOTP code, when the account has one and --totp is not
given, is asked for the same way. ENVPLANE_TOKEN, when set, still wins: API
keys keep working for scripts.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := required(cmd, "email"); err != nil {
				return err
			}
			in := &lineReader{r: bufio.NewReader(a.stdin)}
			var pw drivers.Secret
			var err error
			if passwordFile != "" {
				pw, err = readSecretFile(passwordFile)
			} else {
				pw, err = a.secret(in, "Password: ")
			}
			if err != nil {
				return err
			}
			c := httpapi.NewClient(a.url, "")
			c.UserAgent = a.client.UserAgent
			resp, err := c.SignIn(cmd.Context(), email, pw, drivers.Secret(totp), drivers.Secret(recovery))
			if cp.IsCode(err, cp.ETOTP) {
				code, cerr := a.secret(in, "TOTP code: ")
				if cerr != nil {
					return cerr
				}
				resp, err = c.SignIn(cmd.Context(), email, pw, code, "")
			}
			if err != nil {
				return err
			}
			s := &savedSession{URL: a.url, Token: resp.Token, SessionID: resp.Session.ID, Email: strings.ToLower(email)}
			if err := a.saveSession(s); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "signed in as %s (session %s, ends by %s)\n", s.Email, s.SessionID, when(resp.Session.ExpiresAt))
			return nil
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "your email")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "read the password from this file")
	cmd.Flags().StringVar(&totp, "totp", "", "the TOTP code (otherwise asked for when needed)")
	cmd.Flags().StringVar(&recovery, "recovery-code", "", "a one-time recovery code instead of a TOTP code")
	return cmd
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the saved session and forget it",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.needSession()
			if err != nil {
				return err
			}
			// A session that already ended is as good as revoked.
			if err := a.client.RevokeSession(cmd.Context(), s.SessionID); err != nil && !cp.IsCode(err, cp.EUNAUTHORIZED) {
				return err
			}
			path, err := a.sessionPath()
			if err != nil {
				return err
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			fmt.Fprintf(a.stdout, "signed out %s\n", s.Email)
			return nil
		},
	}
}

func (a *app) useCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "use ORG[/ENV]",
		Short: "Set the session's active organization (the default --org) and environment",
		Args:  args("ORG[/ENV]"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			s, err := a.needSession()
			if err != nil {
				return err
			}
			org, env, _ := strings.Cut(argv[0], "/")
			if org == "" {
				return usageError{errors.New("want ORG or ORG/ENV")}
			}
			sess, err := a.client.SetSessionContext(cmd.Context(), cp.SessionContextRequest{Organization: org, Environment: env})
			if err != nil {
				return err
			}
			s.Organization, s.Environment = org, env
			if err := a.saveSession(s); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "using %s (session %s)\n", argv[0], sess.ID)
			return nil
		},
	}
}

func (a *app) sessionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "List and end your sessions"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List your live sessions",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.client.ListSessions(cmd.Context())
			if err != nil {
				return err
			}
			return a.show(l, func(w *tabwriter.Writer) {
				row(w, "ID", "CURRENT", "CREATED", "LAST SEEN", "EXPIRES", "ADDRESS", "USER AGENT")
				for _, s := range l.Items {
					row(w, s.ID, yesNo(s.Current), when(s.CreatedAt), when(s.LastSeenAt), when(s.ExpiresAt), dash(s.Address), dash(s.UserAgent))
				}
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "End one of your sessions",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client.RevokeSession(cmd.Context(), argv[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "session %s ended\n", argv[0])
			return nil
		},
	}
	cmd.AddCommand(list, revoke)
	return cmd
}

func (a *app) totpCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "totp", Short: "Enrol a TOTP second factor (signed in with envctl login)"}
	var qrFile string
	enrol := &cobra.Command{
		Use:   "enrol",
		Short: "Start an enrolment: shows the secret, the otpauth URL and recovery codes once",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.client.EnrolTOTP(cmd.Context())
			if err != nil {
				return err
			}
			if qrFile != "" {
				if err := writeQRCode(qrFile, e.QRCodePNG); err != nil {
					return err
				}
			}
			return a.show(e, func(w *tabwriter.Writer) {
				field(w, "secret", e.Secret)
				field(w, "otpauth url", e.URL)
				field(w, "qr code", dash(qrFile))
				field(w, "recovery codes", strings.Join(e.RecoveryCodes, " "))
				field(w, "next", "envctl totp confirm CODE, with a code from the app")
			})
		},
	}
	enrol.Flags().StringVar(&qrFile, "qr-file", "", "also write the QR code PNG to this file")
	confirm := &cobra.Command{
		Use:   "confirm CODE",
		Short: "Finish the enrolment with a first code",
		Args:  args("CODE"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := a.client.ConfirmTOTP(cmd.Context(), drivers.Secret(argv[0])); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "two-factor authentication is on: sign-in now asks for a code")
			return nil
		},
	}
	cmd.AddCommand(enrol, confirm)
	return cmd
}

func (a *app) inviteCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "invite", Short: "Invite people to an organization by email (--org)"}
	cmd.AddCommand(a.inviteCreateCommand(), a.inviteListCommand(), a.inviteResendCommand(), a.inviteRevokeCommand(), a.inviteAcceptCommand())
	return cmd
}

// showInvitation prints an invitation answer; the link only when there was no mail server.
func (a *app) showInvitation(r *cp.InvitationResponse) error {
	return a.show(r, func(w *tabwriter.Writer) {
		field(w, "id", r.Invitation.ID)
		field(w, "email", r.Invitation.Email)
		field(w, "role", string(r.Invitation.Role))
		field(w, "expires", when(r.Invitation.ExpiresAt))
		field(w, "mail", r.Mail)
		field(w, "link", r.Link)
		if r.Mail == cp.MailFailed {
			field(w, "next", "the mail was not sent; envctl invite resend "+r.Invitation.ID)
		}
	})
}

func (a *app) inviteCreateCommand() *cobra.Command {
	var role string
	var envs []string
	cmd := &cobra.Command{
		Use:   "create EMAIL",
		Short: "Invite EMAIL with --role and, optionally, --env ENV=ROLE environment roles",
		Args:  args("EMAIL"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			req := cp.CreateInvitationRequest{Email: argv[0], Role: cp.OrgRole(role)}
			for _, e := range envs {
				env, r, ok := strings.Cut(e, "=")
				if !ok {
					return usageError{fmt.Errorf("--env %q: want ENV=ROLE", e)}
				}
				req.Environments = append(req.Environments, cp.InvitationEnvironment{Environment: env, Role: cp.EnvRole(r)})
			}
			resp, err := a.client.CreateInvitation(cmd.Context(), org, req)
			if err != nil {
				return err
			}
			return a.showInvitation(resp)
		},
	}
	cmd.Flags().StringVar(&role, "role", "member", "organization role: owner, admin or member")
	cmd.Flags().StringArrayVar(&envs, "env", nil, "an environment role, ENV=ROLE (repeatable)")
	return cmd
}

func (a *app) inviteListCommand() *cobra.Command {
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List pending invitations",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			l, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.Invitation], error) {
				return a.client.ListInvitations(cmd.Context(), org, o)
			})
			if err != nil {
				return err
			}
			defer a.more(l.Next)
			return a.show(l, func(w *tabwriter.Writer) {
				row(w, "ID", "EMAIL", "ROLE", "EXPIRES", "MAILED")
				for _, i := range l.Items {
					row(w, i.ID, i.Email, string(i.Role), when(i.ExpiresAt), whenPtr(i.MailSentAt))
				}
			})
		},
	}
	page.add(cmd)
	return cmd
}

func (a *app) inviteResendCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resend ID",
		Short: "Give an invitation a new link and expiry and mail it again",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			resp, err := a.client.ResendInvitation(cmd.Context(), org, argv[0])
			if err != nil {
				return err
			}
			return a.showInvitation(resp)
		},
	}
}

func (a *app) inviteRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an invitation",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			if err := a.client.RevokeInvitation(cmd.Context(), org, argv[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "invitation %s revoked\n", argv[0])
			return nil
		},
	}
}

func (a *app) inviteAcceptCommand() *cobra.Command {
	var passwordFile, name string
	cmd := &cobra.Command{
		Use:   "accept TOKEN",
		Short: "Accept an invitation (the last part of its link) and set your password",
		Args:  args("TOKEN"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			in := &lineReader{r: bufio.NewReader(a.stdin)}
			var pw drivers.Secret
			var err error
			if passwordFile != "" {
				pw, err = readSecretFile(passwordFile)
			} else {
				pw, err = a.secret(in, "New password: ")
			}
			if err != nil {
				return err
			}
			token := argv[0]
			if i := strings.LastIndex(token, "/invitations/"); i >= 0 {
				token = token[i+len("/invitations/"):]
			}
			resp, err := a.client.AcceptInvitation(cmd.Context(), token, pw, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s joined %s as %s: sign in with envctl login --email %s\n", resp.Email, resp.Organization, resp.Role, resp.Email)
			return nil
		},
	}
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "read the password from this file")
	cmd.Flags().StringVar(&name, "name", "", "your name")
	return cmd
}

func (a *app) memberRevokeSessionsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-sessions USER",
		Short: "End every session of a member (id or email)",
		Args:  args("USER"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.needOrg()
			if err != nil {
				return err
			}
			r, err := a.client.RevokeMemberSessions(cmd.Context(), org, argv[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%d session(s) of %s ended\n", r.Revoked, argv[0])
			return nil
		},
	}
}

// writeQRCode writes the base64 PNG to path, readable by the user only
// (it encodes the secret).
func writeQRCode(path, b64 string) error {
	png, err := decodeBase64(b64)
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o600)
}

func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("the QR code is not base64: %w", err)
	}
	return b, nil
}
