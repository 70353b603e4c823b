// Command vaultdev runs a real HashiCorp Vault core in dev mode: in-memory
// storage, auto-initialised and unsealed, a known root token, and only the
// Transit (plus KV) secrets engines and the AppRole auth method compiled in.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/builtin/logical/transit"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
)

// noBuiltins is an empty plugin registry: every engine we serve is passed
// to the core directly through LogicalBackends.
type noBuiltins struct{}

func (noBuiltins) Contains(string, consts.PluginType) bool { return false }
func (noBuiltins) Get(string, consts.PluginType) (func() (interface{}, error), bool) {
	return nil, false
}
func (noBuiltins) Keys(consts.PluginType) []string { return nil }
func (noBuiltins) DeprecationStatus(string, consts.PluginType) (consts.DeprecationStatus, bool) {
	return consts.Unknown, false
}
func (noBuiltins) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }

func main() {
	addr := flag.String("addr", "127.0.0.1:8200", "listen address")
	rootID := flag.String("root-token", "root", "root token ID")
	level := flag.String("log-level", "warn", "log level (trace, debug, info, warn, error)")
	mount := flag.Bool("mount-transit", false, "mount the transit engine at transit/ on start")
	flag.Parse()
	if err := run(*addr, *rootID, *level, *mount); err != nil {
		fmt.Fprintln(os.Stderr, "vaultdev:", err)
		os.Exit(1)
	}
}

func run(addr, rootID, level string, mountTransit bool) error {
	start := time.Now()
	logger := hclog.New(&hclog.LoggerOptions{Name: "vaultdev", Level: hclog.LevelFromString(level)})
	phys, err := inmem.NewInmem(nil, logger)
	if err != nil {
		return err
	}
	conf := &vault.CoreConfig{
		Physical: phys,
		LogicalBackends: map[string]logical.Factory{
			"transit": transit.Factory,
			"kv":      kv.Factory,
		},
		CredentialBackends: map[string]logical.Factory{
			"approle": approle.Factory,
		},
		BuiltinRegistry: noBuiltins{},
		DisableMlock:    true,
		Logger:          logger,
		RedirectAddr:    "http://" + addr,
	}
	core, err := vault.NewCore(conf)
	if err != nil {
		return fmt.Errorf("new core: %w", err)
	}
	ctx := namespace.RootContext(context.Background())
	init, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir"},
	})
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if ok, err := core.Unseal(init.SecretShares[0]); err != nil || !ok {
		return fmt.Errorf("unseal: ok=%v err=%v", ok, err)
	}
	// Wait for the core to become active (inmem storage has no HA, so
	// Leader reports ErrHANotEnabled straight away).
	for i := 0; ; i++ {
		isLeader, _, _, err := core.Leader()
		if err == vault.ErrHANotEnabled || (err == nil && isLeader && !core.Sealed()) {
			break
		}
		if i > 200 {
			return fmt.Errorf("core did not become active: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req := &logical.Request{
		ID:          "dev-gen-root",
		Operation:   logical.UpdateOperation,
		ClientToken: init.RootToken,
		Path:        "auth/token/create",
		Data: map[string]interface{}{
			"id":                rootID,
			"policies":          []string{"root"},
			"no_parent":         true,
			"no_default_policy": true,
		},
	}
	resp, err := core.HandleRequest(ctx, req)
	if err != nil || resp == nil || resp.Auth == nil {
		return fmt.Errorf("create root token: resp=%v err=%v", resp, err)
	}
	req.ID, req.Path, req.Data = "dev-revoke-init-root", "auth/token/revoke-self", nil
	if _, err := core.HandleRequest(ctx, req); err != nil {
		return fmt.Errorf("revoke initial root: %w", err)
	}

	if mountTransit {
		resp, err := core.HandleRequest(ctx, &logical.Request{
			Operation:   logical.UpdateOperation,
			ClientToken: rootID,
			Path:        "sys/mounts/transit",
			Data:        map[string]interface{}{"type": "transit"},
		})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("mount transit: %w", err)
		}
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core:           core,
		ListenerConfig: &configutil.Listener{Address: host},
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("vaultdev: listening on http://%s root token %q (ready in %s)\n", ln.Addr(), rootID, time.Since(start).Round(time.Millisecond))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
	return core.Shutdown()
}
