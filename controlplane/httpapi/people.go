package httpapi

import (
	"context"
	"net"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// RevokedSessions says how many sessions a revocation ended.
type RevokedSessions struct {
	Revoked int `json:"revoked"`
}

// peopleRoutes are the routes of sign-in, sessions and invitations (adr/0023).
func peopleRoutes() []Route {
	list := []string{"limit", "cursor"}
	return []Route{
		{Method: http.MethodPost, Path: "/v1/sessions", OperationID: "createSession", Summary: "Sign in with email, password and (when enrolled) a TOTP or recovery code; the session token is shown once", Request: cp.SignInRequest{}, Response: cp.SignInResponse{}, Status: http.StatusCreated, Public: true},
		{Method: http.MethodGet, Path: "/v1/sessions", OperationID: "listSessions", Summary: "The caller's live sessions (never their tokens)", Response: cp.List[*cp.Session]{}, Status: http.StatusOK},
		{Method: http.MethodPut, Path: "/v1/sessions/current", OperationID: "setSessionContext", Summary: "Set the session's active organization and environment", Request: cp.SessionContextRequest{}, Response: cp.Session{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: "/v1/sessions/:id", OperationID: "revokeSession", Summary: "End one of the caller's sessions (sign out)", Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/users/me/totp", OperationID: "enrolTOTP", Summary: "Start a TOTP enrolment: secret, otpauth URL, QR code and recovery codes, shown once (sessions only)", Response: cp.TOTPEnrolment{}, Status: http.StatusCreated},
		{Method: http.MethodPost, Path: "/v1/users/me/totp/confirm", OperationID: "confirmTOTP", Summary: "Finish a TOTP enrolment with a first code", Request: cp.ConfirmTOTPRequest{}, Status: http.StatusNoContent},
		{Method: http.MethodDelete, Path: orgPath + "/members/:user/sessions", OperationID: "revokeMemberSessions", Summary: "End every session of a member (owner, admin)", Response: RevokedSessions{}, Status: http.StatusOK},
		{Method: http.MethodPost, Path: orgPath + "/invitations", OperationID: "createInvitation", Summary: "Invite a person by email; the link is mailed, or answered once when no mail server is configured", Request: cp.CreateInvitationRequest{}, Response: cp.InvitationResponse{}, Status: http.StatusCreated},
		{Method: http.MethodGet, Path: orgPath + "/invitations", OperationID: "listInvitations", Summary: "Pending invitations (owner, admin)", Response: cp.List[*cp.Invitation]{}, Status: http.StatusOK, Query: list},
		{Method: http.MethodPost, Path: orgPath + "/invitations/:id/resend", OperationID: "resendInvitation", Summary: "Give an invitation a new link and expiry and mail it again; 410 once accepted or revoked", Response: cp.InvitationResponse{}, Status: http.StatusOK},
		{Method: http.MethodDelete, Path: orgPath + "/invitations/:id", OperationID: "revokeInvitation", Summary: "Revoke an invitation; 409 once accepted", Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/v1/invitations/:token/accept", OperationID: "acceptInvitation", Summary: "Accept an invitation and set the password; 410 when accepted, revoked or expired; 409 when signed in as another email", Request: cp.AcceptInvitationRequest{}, Response: cp.AcceptInvitationResponse{}, Status: http.StatusOK, Public: true},
	}
}

// answersSecret reports whether the route's answer carries a secret shown
// once (a TOTP secret, recovery codes, an invitation link): such answers are
// never stored for Idempotency-Key replay.
func answersSecret(operationID string) bool {
	switch operationID {
	case "enrolTOTP", "createInvitation", "resendInvitation":
		return true
	}
	return false
}

// clientInfo is where the request came from: the peer's address (never a
// forwarded header a client can write, since the address is what sign-in
// throttles) and the user agent.
func clientInfo(c echo.Context) cp.ClientInfo {
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		host = c.Request().RemoteAddr
	}
	ua := c.Request().UserAgent()
	if !cp.StorableText(ua) {
		// Bytes a store cannot hold say nothing worth keeping.
		ua = ""
	}
	return cp.ClientInfo{Address: host, UserAgent: ua}
}

// peopleHandlers maps the people routes' operation ids to their handlers.
func (s *Server) peopleHandlers() map[string]echo.HandlerFunc {
	svc := s.svc
	return map[string]echo.HandlerFunc{
		"createSession": func(c echo.Context) error {
			var req cp.SignInRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			resp, err := svc.SignIn(requestContext(c), req, clientInfo(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusCreated, resp)
		},
		"listSessions": func(c echo.Context) error {
			ss, err := svc.ListSessions(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return list(c, ss, "")
		},
		"setSessionContext": func(c echo.Context) error {
			var req cp.SessionContextRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			sess, err := svc.SetSessionContext(requestContext(c), principal(c), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, sess)
		},
		"revokeSession": func(c echo.Context) error {
			if err := svc.RevokeSession(requestContext(c), principal(c), c.Param("id")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},
		"enrolTOTP": func(c echo.Context) error {
			e, err := svc.EnrolTOTP(requestContext(c), principal(c))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusCreated, e)
		},
		"confirmTOTP": func(c echo.Context) error {
			var req cp.ConfirmTOTPRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			if err := svc.ConfirmTOTP(requestContext(c), principal(c), req); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},
		"revokeMemberSessions": func(c echo.Context) error {
			n, err := svc.RevokeMemberSessions(requestContext(c), principal(c), c.Param("org"), c.Param("user"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, RevokedSessions{Revoked: n})
		},
		"createInvitation": func(c echo.Context) error {
			var req cp.CreateInvitationRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			resp, err := svc.CreateInvitation(requestContext(c), principal(c), c.Param("org"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusCreated, resp)
		},
		"listInvitations": func(c echo.Context) error {
			pg, err := page(c)
			if err != nil {
				return err
			}
			is, next, err := svc.ListInvitations(requestContext(c), principal(c), c.Param("org"), pg)
			if err != nil {
				return err
			}
			return list(c, is, next)
		},
		"resendInvitation": func(c echo.Context) error {
			resp, err := svc.ResendInvitation(requestContext(c), principal(c), c.Param("org"), c.Param("id"))
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, resp)
		},
		"revokeInvitation": func(c echo.Context) error {
			if err := svc.RevokeInvitation(requestContext(c), principal(c), c.Param("org"), c.Param("id")); err != nil {
				return err
			}
			return c.NoContent(http.StatusNoContent)
		},
		"acceptInvitation": func(c echo.Context) error {
			var req cp.AcceptInvitationRequest
			if err := bind(c, &req); err != nil {
				return err
			}
			// Public, but a signed-in caller is checked against the
			// invitation's email.
			var caller *cp.Principal
			if token, ok := bearer(c); ok {
				p, err := svc.Authenticate(requestContext(c), token)
				if err != nil {
					return err
				}
				caller = p
			}
			resp, err := svc.AcceptInvitation(requestContext(c), caller, c.Param("token"), req)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, resp)
		},
	}
}

// SignIn signs in and returns the session token and the session. Returns
// EUNAUTHORIZED for a wrong email, password or code, ETOTP when the
// account needs a code and none was given, ETOOMANY while locked out.
func (c *Client) SignIn(ctx context.Context, email string, password, totp, recoveryCode drivers.Secret) (*cp.SignInResponse, error) {
	// Secrets marshal as "[redacted]": the one request that must carry
	// them spells them out.
	body := map[string]string{"email": email, "password": password.Reveal()}
	if totp != "" {
		body["totp"] = totp.Reveal()
	}
	if recoveryCode != "" {
		body["recovery_code"] = recoveryCode.Reveal()
	}
	return call[cp.SignInResponse](ctx, c, http.MethodPost, "/v1/sessions", nil, body, nil)
}

// ListSessions lists the caller's live sessions.
func (c *Client) ListSessions(ctx context.Context) (*cp.List[*cp.Session], error) {
	return call[cp.List[*cp.Session]](ctx, c, http.MethodGet, "/v1/sessions", nil, nil, nil)
}

// SetSessionContext sets the calling session's active organization and environment.
func (c *Client) SetSessionContext(ctx context.Context, req cp.SessionContextRequest) (*cp.Session, error) {
	return call[cp.Session](ctx, c, http.MethodPut, "/v1/sessions/current", nil, req, nil)
}

// RevokeSession ends one of the caller's sessions.
func (c *Client) RevokeSession(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), nil, nil, nil, nil)
	return err
}

// EnrolTOTP starts a TOTP enrolment for the signed-in user.
func (c *Client) EnrolTOTP(ctx context.Context) (*cp.TOTPEnrolment, error) {
	return call[cp.TOTPEnrolment](ctx, c, http.MethodPost, "/v1/users/me/totp", nil, nil, nil)
}

// ConfirmTOTP finishes a TOTP enrolment with a first code.
func (c *Client) ConfirmTOTP(ctx context.Context, code drivers.Secret) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/users/me/totp/confirm", nil, map[string]string{"code": code.Reveal()}, nil, nil)
	return err
}

// RevokeMemberSessions ends every session of a member of org.
func (c *Client) RevokeMemberSessions(ctx context.Context, org, user string) (*RevokedSessions, error) {
	return call[RevokedSessions](ctx, c, http.MethodDelete, orgPathOf(org)+"/members/"+url.PathEscape(user)+"/sessions", nil, nil, nil)
}

// CreateInvitation invites a person to org.
func (c *Client) CreateInvitation(ctx context.Context, org string, req cp.CreateInvitationRequest) (*cp.InvitationResponse, error) {
	return call[cp.InvitationResponse](ctx, c, http.MethodPost, orgPathOf(org)+"/invitations", nil, req, nil)
}

// ListInvitations lists org's pending invitations.
func (c *Client) ListInvitations(ctx context.Context, org string, page ListOptions) (*cp.List[*cp.Invitation], error) {
	return call[cp.List[*cp.Invitation]](ctx, c, http.MethodGet, orgPathOf(org)+"/invitations", page.query(), nil, nil)
}

// ResendInvitation gives an invitation a new link and mails it again.
func (c *Client) ResendInvitation(ctx context.Context, org, id string) (*cp.InvitationResponse, error) {
	return call[cp.InvitationResponse](ctx, c, http.MethodPost, orgPathOf(org)+"/invitations/"+url.PathEscape(id)+"/resend", nil, nil, nil)
}

// RevokeInvitation revokes an invitation.
func (c *Client) RevokeInvitation(ctx context.Context, org, id string) error {
	_, err := c.do(ctx, http.MethodDelete, orgPathOf(org)+"/invitations/"+url.PathEscape(id), nil, nil, nil, nil)
	return err
}

// AcceptInvitation accepts the invitation with token, setting password
// (sent with the client's token, if any, as the signed-in user).
func (c *Client) AcceptInvitation(ctx context.Context, token string, password drivers.Secret, name string) (*cp.AcceptInvitationResponse, error) {
	body := map[string]string{"password": password.Reveal()}
	if name != "" {
		body["name"] = name
	}
	return call[cp.AcceptInvitationResponse](ctx, c, http.MethodPost, "/v1/invitations/"+url.PathEscape(token)+"/accept", nil, body, nil)
}
