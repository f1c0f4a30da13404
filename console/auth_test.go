package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast/console"
)

const token = "console-test-admin-token-0123456789"

// mustConsole serves a console without data sources, and returns a client
// that keeps cookies and does not follow redirects.
func mustConsole(t *testing.T) (*httptest.Server, *http.Client) {
	t.Helper()
	c, err := console.New(console.Config{AdminToken: token, Live: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return srv, &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func post(t *testing.T, hc *http.Client, u string, form url.Values, headers ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t *testing.T, hc *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Without a session every page sends the browser to the login form and
// the JSON is refused; a wrong token sets no cookie; the right one sets an
// HttpOnly, SameSite=Strict cookie scoped to /console.
func TestConsole_Login(t *testing.T) {
	srv, hc := mustConsole(t)
	if resp, _ := get(t, hc, srv.URL+"/console/"); resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
		t.Fatalf("the overview without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(t, hc, srv.URL+"/console/api/series"); resp.StatusCode != 401 {
		t.Fatalf("series without a session: %d", resp.StatusCode)
	}
	if resp := post(t, hc, srv.URL+"/console/login", url.Values{"token": {"wrong"}}); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("a wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp := post(t, hc, srv.URL+"/console/login", url.Values{"token": {token}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != 401 {
		t.Fatalf("a login posted from another site: %d", resp.StatusCode)
	}
	resp := post(t, hc, srv.URL+"/console/login", url.Values{"token": {token}, "next": {"/console/lab/"}})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/console/lab/" {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console" || strings.Contains(ck.Value, token) {
		t.Fatalf("session cookie %+v", ck)
	}
	resp, body := get(t, hc, srv.URL+"/console/api/series?since=0")
	var series struct {
		Charts []struct{ ID string } `json:"charts"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &series) != nil || len(series.Charts) == 0 {
		t.Fatalf("series: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, hc, srv.URL+"/console/api/series?since=yesterday"); resp.StatusCode != 400 {
		t.Fatalf("a malformed since: %d", resp.StatusCode)
	}
	if resp, _ := get(t, hc, srv.URL+"/console/no-such-page/"); resp.StatusCode != 404 {
		t.Fatalf("an unknown page: %d", resp.StatusCode)
	}
	if resp := post(t, hc, srv.URL+"/console/login", url.Values{"token": {token}, "next": {"//evil.example/"}}); resp.Header.Get("Location") != "/console/" {
		t.Fatalf("login sent the browser to %s", resp.Header.Get("Location"))
	}
}

// A forged or tampered session is no session.
func TestConsole_TamperedSession(t *testing.T) {
	srv, hc := mustConsole(t)
	u, _ := url.Parse(srv.URL + "/console")
	for _, v := range []string{"9999999999.00", "9999999999", "", "1.abc"} {
		hc.Jar.SetCookies(u, []*http.Cookie{{Name: "holdfast_console", Value: v, Path: "/console"}})
		if resp, _ := get(t, hc, srv.URL+"/console/api/series"); resp.StatusCode != 401 {
			t.Fatalf("session %q: %d", v, resp.StatusCode)
		}
	}
}

// An action needs the session's CSRF token and a same-site request:
// without either it does nothing.
func TestConsole_ActionsNeedCSRF(t *testing.T) {
	srv, hc := mustConsole(t)
	post(t, hc, srv.URL+"/console/login", url.Values{"token": {token}})
	_, page := get(t, hc, srv.URL+"/console/")
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the overview has no CSRF token")
	}
	for name, try := range map[string]struct {
		form    url.Values
		headers []string
	}{
		"no token":       {url.Values{}, nil},
		"wrong token":    {url.Values{"csrf": {strings.Repeat("0", len(m[1]))}}, nil},
		"cross-site":     {url.Values{"csrf": {m[1]}}, []string{"Sec-Fetch-Site", "cross-site"}},
		"foreign origin": {url.Values{"csrf": {m[1]}}, []string{"Origin", "http://evil.example"}},
	} {
		if resp := post(t, hc, srv.URL+"/console/logout", try.form, try.headers...); resp.StatusCode != 401 {
			t.Errorf("%s: logout %d", name, resp.StatusCode)
		}
	}
	if resp, _ := get(t, hc, srv.URL+"/console/api/series"); resp.StatusCode != 200 {
		t.Fatalf("a refused logout ended the session: %d", resp.StatusCode)
	}
	resp := post(t, hc, srv.URL+"/console/logout", url.Values{"csrf": {m[1]}, "back": {"/console/login"}}, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != 303 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := get(t, hc, srv.URL+"/console/api/series"); resp.StatusCode != 401 {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}
