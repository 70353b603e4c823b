// Package mail sends envplane's mail (invitations) through an SMTP server,
// with STARTTLS, implicit TLS or, for a server on the same host, neither.
package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// Security is how the connection to the SMTP server is protected.
type Security string

// Securities.
const (
	// StartTLS upgrades a plain connection (port 587); the server must offer it.
	StartTLS Security = "starttls"
	// ImplicitTLS speaks TLS from the first byte (port 465).
	ImplicitTLS Security = "tls"
	// None sends in clear: for a relay on the same host only. Credentials
	// are refused over it unless the server is on localhost (net/smtp).
	None Security = "none"
)

// Valid reports whether s is a known security.
func (s Security) Valid() bool { return s == StartTLS || s == ImplicitTLS || s == None }

// SMTP sends mail through one SMTP server. Build it with New.
type SMTP struct {
	Host     string
	Port     int
	From     string
	Security Security
	// Username and Password authenticate (PLAIN) when Username is set.
	Username string
	Password drivers.Secret
	// TLS is the TLS configuration; nil verifies the server against the
	// system's roots under Host.
	TLS *tls.Config
	// Timeout bounds one delivery (default 30s).
	Timeout time.Duration
	// Now dates the messages.
	Now func() time.Time
}

var _ cp.Mailer = (*SMTP)(nil)

// New returns a mailer for the server, or an error naming what is wrong
// with the settings.
func New(host string, port int, from string, security Security) (*SMTP, error) {
	switch {
	case host == "":
		return nil, errors.New("smtp: host is required")
	case port <= 0 || port > 65535:
		return nil, errors.New("smtp: port must be 1 to 65535")
	case !strings.Contains(from, "@") || strings.ContainsAny(from, "\r\n"):
		return nil, errors.New("smtp: from must be an email address")
	case !security.Valid():
		return nil, errors.New("smtp: security must be starttls, tls or none")
	}
	return &SMTP{Host: host, Port: port, From: from, Security: security, Timeout: 30 * time.Second, Now: time.Now}, nil
}

// Send delivers m. Errors name the step that failed and the server's
// answer, never the message's body.
func (s *SMTP) Send(ctx context.Context, m cp.Mail) error {
	if strings.ContainsAny(m.To, "\r\n") || strings.ContainsAny(m.Subject, "\r\n") {
		return errors.New("smtp: a header holds one line")
	}
	deadline := time.Now().Add(s.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	dialer := &net.Dialer{Deadline: deadline}
	tlsConfig := s.tlsConfig()
	var conn net.Conn
	var err error
	if s.Security == ImplicitTLS {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtp: cannot connect: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		return fmt.Errorf("smtp: greeting: %w", err)
	}
	defer c.Close()
	if s.Security == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("smtp: the server does not offer STARTTLS")
		}
		if err := c.StartTLS(tlsConfig); err != nil {
			return fmt.Errorf("smtp: STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password.Reveal(), s.Host)); err != nil {
			return fmt.Errorf("smtp: authentication: %w", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(s.message(m)); err != nil {
		return fmt.Errorf("smtp: writing the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: end of data: %w", err)
	}
	return c.Quit()
}

func (s *SMTP) tlsConfig() *tls.Config {
	if s.TLS != nil {
		c := s.TLS.Clone()
		if c.ServerName == "" {
			c.ServerName = s.Host
		}
		return c
	}
	return &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
}

// message renders m as an RFC 5322 plain-text message in UTF-8.
func (s *SMTP) message(m cp.Mail) []byte {
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", s.From)
	fmt.Fprintf(&b, "To: %s\r\n", m.To)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", s.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id), s.Host)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n"))
	return []byte(b.String())
}
