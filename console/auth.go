package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// sessionCookie is the console's session: "<expiry>.<signature>", signed
// with the key derived from the admin token, so no replica keeps sessions
// and changing the token ends them all.
const (
	sessionCookie = "holdfast_console"
	sessionTTL    = 12 * time.Hour
)

// newSession returns a session value valid until exp.
func (c *Console) newSession(exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + c.sign("session:"+e)
}

func (c *Console) sign(msg string) string {
	mac := hmac.New(sha256.New, c.key)
	mac.Write([]byte(msg))
	return hex.EncodeToString(mac.Sum(nil))
}

// sessionOf returns the request's session if its cookie is valid and not expired.
func (c *Console) sessionOf(r *http.Request) (string, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	e, sig, ok := strings.Cut(ck.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(c.sign("session:"+e))) {
		return "", false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || time.Now().Unix() >= exp {
		return "", false
	}
	return ck.Value, true
}

// csrfToken is the token a session's forms carry: a POST without it is
// refused even with the cookie (which SameSite=Strict already keeps from
// other sites' requests).
func (c *Console) csrfToken(session string) string { return c.sign("csrf:" + session)[:32] }

// session lets a request through with a valid session; a page request
// without one goes to the login form, anything else gets 401.
func (c *Console) session(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.sessionOf(r); ok {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/console/api/") {
			http.Redirect(w, r, "/console/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		}
		c.fail(w, r, holdfast.Errorf(holdfast.EUNAUTHORIZED, "log in first"))
	})
}

// action runs a POST with a valid session, a same-origin request and the
// session's CSRF token, then sends the browser back to the page it came
// from (the form's "back" field).
func (c *Console) action(do func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sessionOf(r)
		if !ok {
			c.fail(w, r, holdfast.Errorf(holdfast.EUNAUTHORIZED, "log in first"))
			return
		}
		if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(c.csrfToken(s))) != 1 {
			c.fail(w, r, holdfast.Errorf(holdfast.EUNAUTHORIZED, "the form is stale or from another site; reload the page"))
			return
		}
		if err := do(w, r); err != nil {
			c.fail(w, r, err)
			return
		}
		http.Redirect(w, r, backTo(r.PostFormValue("back")), http.StatusSeeOther)
	})
}

// backTo returns a console path to go back to after an action: the form's,
// if it is one, else the overview.
func backTo(p string) string {
	if strings.HasPrefix(p, "/console/") && !strings.Contains(p, "//") && !strings.Contains(p, `\`) {
		return p
	}
	return "/console/"
}

// sameOrigin refuses requests a browser says come from another site: by
// Sec-Fetch-Site where the browser sends it, else by an Origin naming
// another host. A request with neither (a script, not a browser) passes;
// the CSRF token still holds it.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	c.writePage(w, r, http.StatusOK, "login", map[string]any{"Title": "Log in", "Next": backTo(r.URL.Query().Get("next"))})
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	next := backTo(r.PostFormValue("next"))
	var err error
	if !sameOrigin(r) {
		err = holdfast.Errorf(holdfast.EUNAUTHORIZED, "log in from the console's own page")
	} else if err = c.checkToken(r, r.PostFormValue("token")); err != nil && holdfast.ErrorCode(err) == holdfast.EINTERNAL {
		err = holdfast.Errorf(holdfast.EUNAUTHORIZED, "wrong token")
	}
	if err != nil {
		status := http.StatusUnauthorized
		if holdfast.ErrorCode(err) != holdfast.EUNAUTHORIZED {
			status = http.StatusTooManyRequests
		}
		c.writePage(w, r, status, "login", map[string]any{"Title": "Log in", "Next": next, "Error": holdfast.ErrorMessage(err)})
		return
	}
	exp := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: c.newSession(exp), Path: "/console", Expires: exp,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// checkToken checks a login's token: through Config.CheckToken (which
// throttles failures), or against the token alone.
func (c *Console) checkToken(r *http.Request, tok string) error {
	if c.cfg.CheckToken != nil {
		return c.cfg.CheckToken(r, tok)
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(c.cfg.AdminToken))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return holdfast.Errorf(holdfast.EUNAUTHORIZED, "wrong token")
	}
	return nil
}

// handleLogout ends the browser's session (a signed session cannot be
// revoked on the server: it expires, or every session ends when the admin
// token changes).
func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/console", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	return nil
}
