package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/envplane/envplane/drivers"
)

// session holds the keyring's credentials and keeps its token alive. A
// renewable token is renewed by Vault's lifetime watcher until Vault stops
// renewing it (its max TTL). With AppRole, the keyring then logs in again,
// and it also logs in again at once when Vault refuses its token (expired
// early, revoked, or lost by Vault), so calls fail with ErrDenied only when
// the AppRole login itself is refused.
type session struct {
	client  *api.Client
	timeout time.Duration
	logger  *slog.Logger
	token   drivers.Secret
	appRole AppRole

	mu      sync.Mutex  // serialises logins
	lease   *api.Secret // the token's lease; nil when there is nothing to renew
	changed chan struct{}

	started bool // set by start, before New returns
	once    sync.Once
	stop    chan struct{}
	done    chan struct{}
}

func newSession(client *api.Client, cfg Config, logger *slog.Logger) *session {
	return &session{
		client:  client,
		timeout: cfg.Timeout,
		logger:  logger,
		token:   cfg.Token,
		appRole: cfg.AppRole,
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (s *session) usesAppRole() bool { return s.token == "" }

// login puts a valid token on the client: the configured token once Vault
// has confirmed it (auth/token/lookup-self), or a fresh one from AppRole. It
// fails with an error wrapping ErrDenied if Vault refuses the credentials.
func (s *session) login(ctx context.Context) error {
	if s.usesAppRole() {
		return s.refresh(ctx, "")
	}
	s.client.SetToken(s.token.Reveal())
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Logical().ReadRawWithContext(ctx, "auth/token/lookup-self")
	var info struct {
		Data struct {
			Renewable bool `json:"renewable"`
			TTL       int  `json:"ttl"`
		} `json:"data"`
	}
	if err := decodeAuth(resp, err, &info, s.token.Reveal()); err != nil {
		return fmt.Errorf("vault keyring: cannot authenticate with the token: %w", err)
	}
	if info.Data.Renewable && info.Data.TTL > 0 {
		s.setLease(&api.Secret{Auth: &api.SecretAuth{
			ClientToken:   s.token.Reveal(),
			Renewable:     true,
			LeaseDuration: info.Data.TTL,
		}})
	}
	return nil
}

// refresh logs in with AppRole unless the client's token is no longer stale
// (another caller logged in meanwhile), and puts the new token on the
// client. It fails with an error wrapping ErrDenied if Vault refuses the
// role id or secret id.
func (s *session) refresh(ctx context.Context, stale string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return errors.New("vault keyring: the keyring is closed")
	default:
	}
	if s.client.Token() != stale {
		return nil
	}
	auth, err := s.loginAppRole(ctx)
	if err != nil {
		return err
	}
	s.client.SetToken(auth.ClientToken)
	if auth.LeaseDuration > 0 {
		s.lease = &api.Secret{Auth: auth}
	} else {
		s.lease = nil
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// loginAppRole logs in at auth/<mount>/login with the role id and secret id,
// from a copy of the client that carries no token.
func (s *session) loginAppRole(ctx context.Context) (*api.SecretAuth, error) {
	fail := func(err error) (*api.SecretAuth, error) {
		return nil, fmt.Errorf("vault keyring: cannot log in with approle at auth/%s: %w", s.appRole.Mount, err)
	}
	lc, err := s.client.CloneWithHeaders()
	if err != nil {
		return fail(err)
	}
	lc.ClearToken()
	body, err := json.Marshal(map[string]string{"role_id": s.appRole.RoleID, "secret_id": s.appRole.SecretID.Reveal()})
	if err != nil {
		return fail(err)
	}
	defer clear(body)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := lc.Logical().WriteRawWithContext(ctx, "auth/"+s.appRole.Mount+"/login", body)
	var answer struct {
		Auth *api.SecretAuth `json:"auth"`
	}
	if err := decodeAuth(resp, err, &answer, s.appRole.SecretID.Reveal()); err != nil {
		// Vault answers a wrong role id or secret id with 400: the
		// credentials are refused, as a bad token is.
		var re *responseError
		if errors.As(err, &re) && re.status == http.StatusBadRequest {
			re.kind = ErrDenied
		}
		return fail(err)
	}
	if answer.Auth == nil || answer.Auth.ClientToken == "" {
		return fail(fmt.Errorf("%w: the login answer holds no token", ErrDenied))
	}
	return answer.Auth, nil
}

// decodeAuth decodes an authentication answer into out and translates the
// client's error, scrubbing secret.
func decodeAuth(resp *api.Response, callErr error, out any, secret string) error {
	if resp != nil && resp.Body != nil {
		defer resp.Body.Close()
		if callErr == nil {
			if err := resp.DecodeJSON(out); err != nil {
				return fmt.Errorf("%w: cannot decode vault's answer", ErrUnavailable)
			}
		}
	}
	if callErr != nil {
		return translate(callErr, secret)
	}
	if resp == nil {
		return fmt.Errorf("%w: empty answer", ErrUnavailable)
	}
	return nil
}

// denied reports whether a call's raw error is Vault refusing the token.
func denied(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

func (s *session) setLease(lease *api.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lease = lease
}

func (s *session) currentLease() *api.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// start keeps the token alive in the background until close.
func (s *session) start() {
	s.started = true
	go s.run()
}

func (s *session) run() {
	defer close(s.done)
	for {
		select {
		case <-s.changed: // this lease is the newest
		default:
		}
		lease := s.currentLease()
		if lease == nil {
			// A token without a TTL needs no renewal. With AppRole, wait
			// for a login that brings one.
			if !s.usesAppRole() {
				return
			}
			select {
			case <-s.stop:
				return
			case <-s.changed:
				continue
			}
		}
		switch s.watch(lease) {
		case watchStopped:
			return
		case watchReplaced:
			continue
		}
		if s.client.Token() != lease.Auth.ClientToken {
			continue // a call logged in again meanwhile
		}
		if !s.usesAppRole() {
			s.logger.Warn("vault keyring: the token can no longer be renewed and will expire; give envplane a new token")
			return
		}
		if !s.relogin(lease.Auth.ClientToken) {
			return
		}
	}
}

// relogin logs in with AppRole again, retrying with backoff until it
// succeeds (true) or close is called (false).
func (s *session) relogin(stale string) bool {
	retry := time.Second
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		err := s.refresh(ctx, stale)
		cancel()
		if err == nil {
			s.logger.Info("vault keyring: logged in again with approle")
			return true
		}
		s.logger.Warn("vault keyring: approle login failed; retrying", "error", err, "retry_in", retry)
		select {
		case <-s.stop:
			return false
		case <-time.After(retry):
		}
		retry = min(2*retry, time.Minute)
	}
}

type watchEnd int

const (
	watchEnded    watchEnd = iota // Vault no longer renews the token
	watchReplaced                 // a login put another token on the client
	watchStopped                  // close was called
)

// watch renews lease's token until one of the watchEnd conditions.
func (s *session) watch(lease *api.Secret) watchEnd {
	w, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: lease})
	if err != nil {
		s.logger.Warn("vault keyring: cannot renew the token", "error", translate(err, lease.Auth.ClientToken))
		return watchStopped
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-s.stop:
			return watchStopped
		case <-s.changed:
			return watchReplaced
		case r := <-w.RenewCh():
			ttl := 0
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				ttl = r.Secret.Auth.LeaseDuration
			}
			s.logger.Debug("vault keyring: token renewed", "ttl_seconds", ttl)
		case err := <-w.DoneCh():
			if err != nil {
				s.logger.Warn("vault keyring: token renewal stopped", "error", translate(err, lease.Auth.ClientToken))
			}
			return watchEnded
		}
	}
}

// close stops the renewal and, for an AppRole token, revokes it (best
// effort). Idempotent.
func (s *session) close() {
	s.once.Do(func() {
		close(s.stop)
		if s.started {
			<-s.done
		}
		if s.usesAppRole() && s.client.Token() != "" {
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			resp, _ := s.client.Logical().WriteRawWithContext(ctx, "auth/token/revoke-self", nil)
			if resp != nil {
				resp.Body.Close()
			}
		}
		s.client.ClearToken()
	})
}
