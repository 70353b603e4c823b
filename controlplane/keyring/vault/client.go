package vault

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// newClient builds a Vault client from cfg alone. api.NewClient also reads
// VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS from the environment; every
// one of them is overwritten here, since nothing below cmd/ may read the
// environment and a stray VAULT_TOKEN must not decide who envplane is.
func newClient(cfg Config) (*api.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	conf := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: transport,
			// Each request is bounded by the call's context; this also
			// bounds the renewals the lifetime watcher sends without one.
			Timeout: cfg.Timeout,
			// The client follows Vault's redirects itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// Zero: the keyring bounds each call with its own context, which the
		// client would otherwise cancel before a raw response is read.
		Timeout:    0,
		MaxRetries: cfg.MaxRetries,
		// Linear backoff with jitter between retries.
		MinRetryWait: 250 * time.Millisecond,
		MaxRetryWait: 2 * time.Second,
	}
	err := conf.ConfigureTLS(&api.TLSConfig{
		CACert:        cfg.TLS.CAFile,
		ClientCert:    cfg.TLS.CertFile,
		ClientKey:     cfg.TLS.KeyFile,
		TLSServerName: cfg.TLS.ServerName,
		Insecure:      cfg.TLS.InsecureSkipVerify,
	})
	if err != nil {
		return nil, fmt.Errorf("vault keyring: cannot configure tls: %w", err)
	}
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("vault keyring: cannot build client: %w", err)
	}
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	client.ClearToken()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	} else {
		client.ClearNamespace()
	}
	return client, nil
}

// read GETs path and decodes the answer's data into out.
func (k *Keyring) read(ctx context.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	return k.call(ctx, out, func() (*api.Response, error) {
		return k.client.Logical().ReadRawWithContext(ctx, path)
	})
}

// write PUTs body (JSON) to path and decodes the answer's data into out
// (unless out is nil). The caller clears body afterwards if it is secret.
func (k *Keyring) write(ctx context.Context, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	return k.call(ctx, out, func() (*api.Response, error) {
		return k.client.Logical().WriteRawWithContext(ctx, path, body)
	})
}

// call sends a request and decodes its answer. When Vault refuses an AppRole
// token, it logs in again once and resends the request.
func (k *Keyring) call(ctx context.Context, out any, send func() (*api.Response, error)) error {
	token := k.client.Token()
	resp, err := send()
	if denied(err) && k.session.usesAppRole() {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		if lerr := k.session.refresh(ctx, token); lerr != nil {
			k.logger.Warn("vault keyring: vault refused the token and approle login failed", "error", lerr)
		} else {
			k.logger.Info("vault keyring: logged in again with approle after vault refused the token")
			resp, err = send()
		}
	}
	return k.decode(resp, err, out)
}

// decode reads an answer, clears the copy of its body that it read, and
// returns the client's error translated (see translate). A Transit batch
// that fails in part or in full still has its batch_results decoded into
// out, so the caller can tell which items failed.
func (k *Keyring) decode(resp *api.Response, callErr error, out any) error {
	if resp == nil || resp.Body == nil {
		if callErr == nil {
			return fmt.Errorf("%w: empty answer", ErrUnavailable)
		}
		return translate(callErr, k.client.Token())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	defer clear(body)
	if err != nil && callErr == nil {
		callErr = err
	}
	if out != nil && len(body) > 0 {
		envelope := struct {
			Data any `json:"data"`
		}{Data: out}
		if err := json.Unmarshal(body, &envelope); err != nil && callErr == nil {
			// Never quote the body: it may hold a data key.
			callErr = fmt.Errorf("cannot decode vault's answer to %s", resp.Request.URL.Path)
		}
	}
	if callErr != nil {
		return translate(callErr, k.client.Token())
	}
	return nil
}
