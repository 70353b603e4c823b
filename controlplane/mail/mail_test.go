package mail_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/mail"
	"github.com/envplane/envplane/controlplane/mail/mailtest"
)

func fixedNow() time.Time { return time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC) }

// TestSendWithSTARTTLSAndAuthentication: the message reaches a real SMTP
// server over STARTTLS (self-signed certificate, trusted by the test),
// after PLAIN authentication, with its headers and body intact.
func TestSendWithSTARTTLSAndAuthentication(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{StartTLS: true, Username: "envplane", Password: "smtp-pass-7d1e"})
	m, err := mail.New(srv.Host, srv.Port, "envplane@example.com", mail.StartTLS)
	if err != nil {
		t.Fatal(err)
	}
	m.Username, m.Password, m.Now = "envplane", "smtp-pass-7d1e", fixedNow
	m.TLS = &tls.Config{RootCAs: srv.RootCAs, MinVersion: tls.VersionTLS12}
	err = m.Send(t.Context(), cp.Mail{To: "ada@example.com", Subject: "Hello ünïcode", Body: "line one\nhttps://x.example/invitations/epi_abc\n"})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	got := string(msgs[0].Data)
	for _, want := range []string{"From: envplane@example.com\r\n", "To: ada@example.com\r\n", "Subject: =?utf-8?q?Hello_=C3=BCn=C3=AFcode?=\r\n", "line one\r\nhttps://x.example/invitations/epi_abc\r\n", "Date: Sat, 14 Mar 2026 15:09:26 +0000"} {
		if !strings.Contains(got, want) {
			t.Errorf("message lacks %q:\n%s", want, got)
		}
	}
	if msgs[0].From != "envplane@example.com" || len(msgs[0].To) != 1 || msgs[0].To[0] != "ada@example.com" {
		t.Errorf("envelope from %q to %v", msgs[0].From, msgs[0].To)
	}
}

// TestSendFailures: an untrusted certificate, wrong credentials, a server
// without STARTTLS when it is required, and a closed port are errors, and
// none of them names the body.
func TestSendFailures(t *testing.T) {
	tlsSrv := mailtest.Start(t, mailtest.Options{StartTLS: true, Username: "u", Password: "right"})
	plain := mailtest.Start(t, mailtest.Options{})
	closed := mailtest.Start(t, mailtest.Options{})
	closed.Close()
	body := "secret link epi_do-not-print"
	cases := []struct {
		name string
		srv  *mailtest.Server
		sec  mail.Security
		set  func(m *mail.SMTP)
	}{
		{"untrusted certificate", tlsSrv, mail.StartTLS, func(m *mail.SMTP) {}},
		{"wrong password", tlsSrv, mail.StartTLS, func(m *mail.SMTP) {
			m.TLS = &tls.Config{RootCAs: tlsSrv.RootCAs, MinVersion: tls.VersionTLS12}
			m.Username, m.Password = "u", "wrong"
		}},
		{"no STARTTLS offered", plain, mail.StartTLS, func(m *mail.SMTP) {}},
		{"server down", closed, mail.None, func(m *mail.SMTP) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := mail.New(tc.srv.Host, tc.srv.Port, "envplane@example.com", tc.sec)
			if err != nil {
				t.Fatal(err)
			}
			tc.set(m)
			err = m.Send(t.Context(), cp.Mail{To: "a@example.com", Subject: "s", Body: body})
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if strings.Contains(err.Error(), "epi_") {
				t.Errorf("error names the body: %v", err)
			}
		})
	}
	if n := len(tlsSrv.Messages()) + len(plain.Messages()); n != 0 {
		t.Errorf("%d messages were delivered by failing sends", n)
	}
}

// TestNewRefusesBadSettings: the settings are checked when the mailer is made.
func TestNewRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		from string
		sec  mail.Security
	}{
		{"", 25, "a@b", mail.None}, {"h", 0, "a@b", mail.None}, {"h", 25, "nobody", mail.None},
		{"h", 25, "a@b\r\nBcc: x@y", mail.None}, {"h", 25, "a@b", "ssl"},
	} {
		if _, err := mail.New(tc.host, tc.port, tc.from, tc.sec); err == nil {
			t.Errorf("New(%q, %d, %q, %q) succeeded", tc.host, tc.port, tc.from, tc.sec)
		}
	}
}
