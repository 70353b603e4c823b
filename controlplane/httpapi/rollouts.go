package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
)

// rolloutHandlers maps the rollout routes' operation ids to their
// handlers; the organization's routes and the platform-wide ones (no :org)
// share them.
func (s *Server) rolloutHandlers() map[string]echo.HandlerFunc {
	svc := s.svc
	create := func(c echo.Context) error {
		var req cp.CreateRolloutRequest
		if err := bind(c, &req); err != nil {
			return err
		}
		v, err := svc.CreateRollout(requestContext(c), principal(c), c.Param("org"), req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, v)
	}
	listRollouts := func(c echo.Context) error {
		pg, err := page(c)
		if err != nil {
			return err
		}
		rs, next, err := svc.ListRollouts(requestContext(c), principal(c), c.Param("org"), pg)
		if err != nil {
			return err
		}
		return list(c, rs, next)
	}
	get := func(c echo.Context) error {
		v, err := svc.GetRollout(requestContext(c), principal(c), c.Param("org"), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	}
	control := func(what string) echo.HandlerFunc {
		return func(c echo.Context) error {
			v, err := svc.ControlRollout(requestContext(c), principal(c), c.Param("org"), c.Param("id"), what)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, v)
		}
	}
	return map[string]echo.HandlerFunc{
		"createRollout": create, "createPlatformRollout": create,
		"listRollouts": listRollouts, "listPlatformRollouts": listRollouts,
		"getRollout": get, "getPlatformRollout": get,
		"pauseRollout": control(cp.RolloutPause), "pausePlatformRollout": control(cp.RolloutPause),
		"resumeRollout": control(cp.RolloutResume), "resumePlatformRollout": control(cp.RolloutResume),
		"cancelRollout": control(cp.RolloutCancel), "cancelPlatformRollout": control(cp.RolloutCancel),
	}
}
