package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	cp "github.com/envplane/envplane/controlplane"
)

// handlers maps every route's operation id to its handler.
func (s *Server) handlers(reg prometheus.Registerer) map[string]echo.HandlerFunc {
	var metricsHandler http.Handler = promhttp.Handler()
	if g, ok := reg.(prometheus.Gatherer); ok {
		metricsHandler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	}
	svc := s.svc
	return map[string]echo.HandlerFunc{
		"healthz": func(c echo.Context) error {
			return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
		},
		"readyz": func(c echo.Context) error {
			if err := svc.Store.Ping(c.Request().Context()); err != nil {
				return cp.Errorf(cp.EUNAVAILABLE, "the store does not answer").Wrap(err)
			}
			r := cp.Readiness{Status: "ready", Keyring: "ok", NewSecrets: true}
			if err := svc.KeyringHealth(c.Request().Context()); err != nil {
				s.logger.Warn("the keyring cannot wrap new secrets", "err", err)
				r.Keyring, r.NewSecrets = "unavailable", false
			}
			return c.JSON(http.StatusOK, r)
		},
		"metrics": echo.WrapHandler(metricsHandler),
		"openapi": func(c echo.Context) error {
			return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.openapi)
		},
		"getMe": func(c echo.Context) error {
			me, err := svc.Me(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, me)
		},

		"createOrganization": func(c echo.Context) error {
			var req cp.CreateOrganizationRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			wait, err := s.wait(c)
			if err != nil {
				return err
			}
			resp, done, err := svc.CreateOrganization(requestContext(c), principal(c), req)
			if err != nil {
				return err
			}
			awaitDone(c, done, wait)
			env, op, err := svc.Settle(requestContext(c), resp.Operation)
			if err != nil {
				return err
			}
			resp.DefaultEnvironment, resp.Operation = env, op
			return c.JSON(http.StatusCreated, resp)
		},
		"listOrganizations": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			orgs, next, err := svc.ListOrganizations(requestContext(c), principal(c), pg)
			if err != nil {
				return err
			}
			return list(c, orgs, next)
		},
		"getOrganization": func(c echo.Context) error {
			org, err := svc.GetOrganization(requestContext(c), principal(c), c.Param("org"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, org)
		},
		"updateOrganization": func(c echo.Context) error {
			var req cp.UpdateOrganizationRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			org, err := svc.UpdateOrganization(requestContext(c), principal(c), c.Param("org"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, org)
		},
		"deleteOrganization": func(c echo.Context) error {
			if err := svc.DeleteOrganization(requestContext(c), principal(c), c.Param("org")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},

		"listMembers": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			ms, next, err := svc.ListMembers(requestContext(c), principal(c), c.Param("org"), pg)
			if err != nil {
				return err
			}
			return list(c, ms, next)
		},
		"addMember": func(c echo.Context) error {
			var req cp.AddMemberRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			m, err := svc.AddMember(requestContext(c), principal(c), c.Param("org"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusCreated, m)
		},
		"updateMember": func(c echo.Context) error {
			var req cp.UpdateMemberRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			m, err := svc.UpdateMember(requestContext(c), principal(c), c.Param("org"), c.Param("user"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, m)
		},
		"removeMember": func(c echo.Context) error {
			if err := svc.RemoveMember(requestContext(c), principal(c), c.Param("org"), c.Param("user")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},

		"listAPIKeys": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			keys, next, err := svc.ListAPIKeys(requestContext(c), principal(c), c.Param("org"), pg)
			if err != nil {
				return err
			}
			return list(c, keys, next)
		},
		"createAPIKey": func(c echo.Context) error {
			var req cp.CreateAPIKeyRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			resp, err := svc.CreateAPIKey(requestContext(c), principal(c), c.Param("org"), req)
			if err != nil {
				return err
			}
			c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
			return c.JSON(http.StatusCreated, resp)
		},
		"getAPIKey": func(c echo.Context) error {
			k, err := svc.GetAPIKey(requestContext(c), principal(c), c.Param("org"), c.Param("id"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, k)
		},
		"revokeAPIKey": func(c echo.Context) error {
			if err := svc.RevokeAPIKey(requestContext(c), principal(c), c.Param("org"), c.Param("id")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},
		"listAuditEvents": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			events, next, err := svc.ListAuditEvents(requestContext(c), principal(c), c.Param("org"), pg)
			if err != nil {
				return err
			}
			return list(c, events, next)
		},

		"createEnvironment": func(c echo.Context) error {
			return s.createEnvironment(c, c.Param("org"))
		},
		"createEnvironmentInOrganization": func(c echo.Context) error {
			return s.createEnvironment(c, "")
		},
		"listEnvironments": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			f := cp.EnvironmentListFilter{Type: cp.EnvironmentType(c.QueryParam("type")),
				Status: cp.EnvironmentStatus(c.QueryParam("status")), Target: c.QueryParam("target")}
			envs, next, err := svc.ListEnvironments(requestContext(c), principal(c), c.Param("org"), f, pg)
			if err != nil {
				return err
			}
			return list(c, envs, next)
		},
		"getEnvironment": func(c echo.Context) error {
			v, err := svc.GetEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},
		"updateEnvironment": func(c echo.Context) error {
			var req cp.UpdateEnvironmentRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			v, err := svc.UpdateEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},
		"deleteEnvironment": func(c echo.Context) error {
			op, _, err := svc.DeleteEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			env, op, err := svc.Settle(requestContext(c), op)
			if err != nil {
				return err
			}
			return accepted(c, cp.EnvironmentOperationResponse{Environment: env, Operation: op})
		},
		"suspendEnvironment": func(c echo.Context) error {
			v, err := svc.SuspendEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},
		"resetEnvironment": func(c echo.Context) error {
			var req cp.ResetEnvironmentRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			_, op, _, err := svc.ResetEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req)
			if err != nil {
				return err
			}
			env, op, err := svc.Settle(requestContext(c), op)
			if err != nil {
				return err
			}
			return accepted(c, cp.EnvironmentOperationResponse{Environment: env, Operation: op})
		},
		"resumeEnvironment": func(c echo.Context) error {
			v, err := svc.ResumeEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},

		"getConnection": func(c echo.Context) error {
			return s.connection(c, c.Param("org"), c.Param("env"))
		},
		"getConnectionByID": func(c echo.Context) error {
			return s.connection(c, "", c.Param("id"))
		},

		"listReceipts": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			f, err := receiptFilter(c)
			if err != nil {
				return err
			}
			rs, next, err := svc.ListReceipts(requestContext(c), principal(c), c.Param("org"), c.Param("env"), f, pg)
			if err != nil {
				return err
			}
			return list(c, rs, next)
		},

		"listCredentials": func(c echo.Context) error {
			cs, err := svc.ListCredentials(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return list(c, cs, "")
		},
		"rotateCredentials": func(c echo.Context) error {
			var req cp.RotateCredentialsRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			op, done, err := svc.RotateCredentials(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req)
			return s.credentialsAnswer(c, op, done, err)
		},
		"revokeCredentials": func(c echo.Context) error {
			var req cp.RevokeCredentialsRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			op, done, err := svc.RevokeCredentials(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req)
			return s.credentialsAnswer(c, op, done, err)
		},

		"listEnvironmentMembers": func(c echo.Context) error {
			ms, err := svc.ListEnvironmentMembers(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return list(c, ms, "")
		},
		"putEnvironmentMember": func(c echo.Context) error {
			var req cp.PutEnvironmentMemberRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			m, err := svc.PutEnvironmentMember(requestContext(c), principal(c), c.Param("org"), c.Param("env"), c.Param("user"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, m)
		},
		"removeEnvironmentMember": func(c echo.Context) error {
			if err := svc.RemoveEnvironmentMember(requestContext(c), principal(c), c.Param("org"), c.Param("env"), c.Param("user")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},

		"createBackup": func(c echo.Context) error {
			wait, err := s.wait(c)
			if err != nil {
				return err
			}
			b, op, done, err := svc.CreateBackup(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			awaitDone(c, done, wait)
			resp, err := svc.SettleBackup(requestContext(c), b, op)
			if err != nil {
				return err
			}
			if resp.Operation.Status == cp.OpSucceeded {
				return c.JSON(http.StatusCreated, resp)
			}
			c.Response().Header().Set(echo.HeaderLocation, operationPath(op.ID))
			return c.JSON(http.StatusAccepted, resp)
		},
		"listBackups": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			bs, next, err := svc.ListBackups(requestContext(c), principal(c), c.Param("org"), c.Param("env"), pg)
			if err != nil {
				return err
			}
			return list(c, bs, next)
		},
		"restoreEnvironment": func(c echo.Context) error {
			var req cp.RestoreRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			wait, err := s.wait(c)
			if err != nil {
				return err
			}
			_, op, done, err := svc.RestoreEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req)
			if err != nil {
				return err
			}
			awaitDone(c, done, wait)
			env, op, err := svc.Settle(requestContext(c), op)
			if err != nil {
				return err
			}
			body := cp.EnvironmentOperationResponse{Environment: env, Operation: op}
			switch {
			case op.Status == cp.OpSucceeded && req.Into == "":
				return c.JSON(http.StatusOK, body)
			case op.Status == cp.OpSucceeded:
				return c.JSON(http.StatusCreated, body)
			}
			return accepted(c, body)
		},

		"getEnvironmentUsage": func(c echo.Context) error {
			u, err := svc.EnvironmentUsage(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, u)
		},
		"getOrganizationUsage": func(c echo.Context) error {
			u, err := svc.OrganizationUsage(requestContext(c), principal(c), c.Param("org"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, u)
		},

		"getSchema": func(c echo.Context) error {
			st, err := svc.SchemaStatus(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, st)
		},
		"migrateSchema": func(c echo.Context) error {
			st, err := svc.MigrateSchema(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, st)
		},

		"listTargets": func(c echo.Context) error {
			ts, err := svc.ListTargets(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, cp.List[cp.TargetView]{Items: ts})
		},
		"getKeyring": func(c echo.Context) error {
			cov, err := svc.KeyringStatus(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, cov)
		},
		"rotateKeyring": func(c echo.Context) error {
			cov, err := svc.RotateKeys(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, cov)
		},
		"rewrapKeyring": func(c echo.Context) error {
			cov, err := svc.RewrapKeys(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, cov)
		},
		"retireKeyring": func(c echo.Context) error {
			var req cp.RetireKeysRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			cov, err := svc.RetireKeys(requestContext(c), principal(c), req.Below)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, cov)
		},

		"listOperations": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			f := cp.OperationListFilter{Environment: c.QueryParam("environment"),
				Status: cp.OperationStatus(c.QueryParam("status")), Kind: cp.OperationKind(c.QueryParam("kind"))}
			ops, next, err := svc.ListOperations(requestContext(c), principal(c), c.Param("org"), f, pg)
			if err != nil {
				return err
			}
			return list(c, ops, next)
		},
		"getOperation": func(c echo.Context) error {
			op, err := svc.GetOperation(requestContext(c), principal(c), c.Param("id"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, op)
		},
	}
}

// createEnvironment starts provisioning and answers 201 when it finished
// within the request's wait, 202 otherwise; both carry the environment and
// its operation.
func (s *Server) createEnvironment(c echo.Context, org string) error {
	var req cp.CreateEnvironmentRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if org != "" && req.Organization != "" {
		return cp.Invalid(cp.FieldError{Field: "organization", Message: "is given by the path"})
	}
	wait, err := s.wait(c)
	if err != nil {
		return err
	}
	_, op, done, err := s.svc.CreateEnvironment(requestContext(c), principal(c), org, req)
	if err != nil {
		return err
	}
	awaitDone(c, done, wait)
	env, op, err := s.svc.Settle(requestContext(c), op)
	if err != nil {
		return err
	}
	body := cp.EnvironmentOperationResponse{Environment: env, Operation: op}
	if op.Status == cp.OpSucceeded {
		return c.JSON(http.StatusCreated, body)
	}
	return accepted(c, body)
}

// accepted answers 202 with the body and, in Location, the operation to follow.
func accepted(c echo.Context, body cp.EnvironmentOperationResponse) error {
	c.Response().Header().Set(echo.HeaderLocation, operationPath(body.Operation.ID))
	return c.JSON(http.StatusAccepted, body)
}

// operationPath is where an operation is read.
func operationPath(id string) string { return "/v1/operations/" + url.PathEscape(id) }

// credentialsAnswer waits for a rotate or revoke operation (they are short)
// and answers with the credentials' metadata.
func (s *Server) credentialsAnswer(c echo.Context, op *cp.Operation, done <-chan struct{}, err error) error {
	if err != nil {
		return err
	}
	awaitDone(c, done, s.maxWait)
	resp, err := s.svc.CredentialsAfter(requestContext(c), op)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// connection answers the router: a resolve, or with ?wait= a watch that
// answers once the credential is another than ?after=. The body carries a
// secret: it must never be cached.
func (s *Server) connection(c echo.Context, org, env string) error {
	ctx := requestContext(c)
	p, scope := principal(c), cp.Scope(c.QueryParam("scope"))
	var conn *cp.Connection
	var err error
	if raw := c.QueryParam("wait"); raw != "" {
		req := cp.WatchRequest{OrgRef: org, EnvRef: env, Scope: scope, After: c.QueryParam("after")}
		if req.Wait, err = watchWait(raw); err != nil {
			return err
		}
		if len(req.After) > 100 {
			return cp.Invalid(cp.FieldError{Field: "after", Message: "is not a credential id"})
		}
		token, _ := bearer(c)
		req.Authenticate = func(ctx context.Context) (*cp.Principal, error) { return s.svc.Authenticate(ctx, token) }
		conn, err = s.svc.WatchConnection(ctx, p, req)
	} else if c.QueryParam("after") != "" {
		return cp.Invalid(cp.FieldError{Field: "after", Message: "applies only with wait"})
	} else if org == "" {
		conn, err = s.svc.ResolveConnectionByID(ctx, p, env, scope)
	} else {
		conn, err = s.svc.ResolveConnection(ctx, p, org, env, scope)
	}
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Pragma", "no-cache")
	// The router's hot path: written by hand, not by reflection, to the
	// same bytes encoding/json would write (without HTML escaping).
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, RevealConnection(conn).AppendJSON(make([]byte, 0, 768)))
}

// watchWait reads ?wait=: a duration ("30s") or whole seconds ("30"), from 1s to cp.MaxWatch.
func watchWait(raw string) (time.Duration, error) {
	d, err := time.ParseDuration(raw)
	if err != nil {
		n, nerr := strconv.Atoi(raw)
		if nerr != nil {
			return 0, cp.Invalid(cp.FieldError{Field: "wait", Message: "must be a duration such as 30s, or whole seconds"})
		}
		d = time.Duration(n) * time.Second
	}
	if d < time.Second || d > cp.MaxWatch {
		return 0, cp.Invalid(cp.FieldError{Field: "wait", Message: "must be between 1s and 60s"})
	}
	return d, nil
}

// ConnectionAnswer is the router's answer on the wire, DSN and secret in
// clear; RevealConnection builds it, the one place they are revealed.
type ConnectionAnswer struct {
	EnvironmentID string     `json:"environment_id"`
	Organization  string     `json:"organization"`
	Environment   string     `json:"environment"`
	Driver        string     `json:"driver"`
	Scope         cp.Scope   `json:"scope"`
	DSN           string     `json:"dsn"`
	URL           string     `json:"url"`
	Host          string     `json:"host,omitempty"`
	Port          int        `json:"port,omitempty"`
	Database      string     `json:"database"`
	Username      string     `json:"username,omitempty"`
	Secret        string     `json:"secret"`
	CredentialID  string     `json:"credential_id"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RefreshAfter  time.Time  `json:"refresh_after"`
}

// RevealConnection returns c as the router answers it, secrets in clear.
func RevealConnection(c *cp.Connection) ConnectionAnswer {
	return ConnectionAnswer{
		EnvironmentID: c.EnvironmentID, Organization: c.Organization, Environment: c.Environment,
		Driver: c.Driver, Scope: c.Scope, DSN: c.DSN.Reveal(), URL: c.URL, Host: c.Host, Port: c.Port,
		Database: c.Database, Username: c.Username, Secret: c.Secret.Reveal(), CredentialID: c.CredentialID,
		ExpiresAt: c.ExpiresAt, RefreshAfter: c.RefreshAfter,
	}
}

// receiptFilter reads ?since=, ?until= (RFC 3339) and ?credential=.
func receiptFilter(c echo.Context) (cp.ReceiptFilter, error) {
	f := cp.ReceiptFilter{CredentialID: c.QueryParam("credential")}
	for _, q := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		raw := c.QueryParam(q.name)
		if raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return f, cp.Invalid(cp.FieldError{Field: q.name, Message: "must be an RFC 3339 time"})
		}
		*q.to = t.UTC()
	}
	if len(f.CredentialID) > 100 {
		return f, cp.Invalid(cp.FieldError{Field: "credential", Message: "is not a credential id"})
	}
	return f, nil
}
