package httpapi

import (
	"net/http"

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
			return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
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
			envs, next, err := svc.ListEnvironments(requestContext(c), principal(c), c.Param("org"), pg)
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
			return c.JSON(http.StatusAccepted, cp.EnvironmentOperationResponse{Environment: env, Operation: op})
		},
		"suspendEnvironment": func(c echo.Context) error {
			v, err := svc.SuspendEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},
		"resumeEnvironment": func(c echo.Context) error {
			v, err := svc.ResumeEnvironment(requestContext(c), principal(c), c.Param("org"), c.Param("env"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		},

		"getConnection": func(c echo.Context) error {
			conn, err := svc.ResolveConnection(requestContext(c), principal(c), c.Param("org"), c.Param("env"), cp.Scope(c.QueryParam("scope")))
			return connection(c, conn, err)
		},
		"getConnectionByID": func(c echo.Context) error {
			conn, err := svc.ResolveConnectionByID(requestContext(c), principal(c), c.Param("id"), cp.Scope(c.QueryParam("scope")))
			return connection(c, conn, err)
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
// within the request's wait, 202 with the operation otherwise.
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
	if op.Status == cp.OpSucceeded {
		return c.JSON(http.StatusCreated, env)
	}
	return c.JSON(http.StatusAccepted, cp.EnvironmentOperationResponse{Environment: env, Operation: op})
}

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

// connection answers the router. The body carries a secret: it must never be cached.
func connection(c echo.Context, conn *cp.Connection, err error) error {
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
	return c.JSON(http.StatusOK, conn)
}
