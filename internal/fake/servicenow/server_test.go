package servicenow

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestAuthRequired(t *testing.T) {
	s := start(t)
	for _, rq := range []req{
		{path: "/api/now/table/sc_req_item", noAuth: true},
		{path: "/api/now/table/sc_req_item", noAuth: true, header: map[string]string{"Authorization": "Basic " + "YnJpZGdlOndyb25n"}}, // bridge:wrong
		{path: "/api/now/table/sc_req_item", bearer: "unknown"},
	} {
		resp, body := do(t, s, rq)
		wantStatus(t, resp, body, 401)
		if h := resp.Header.Get("WWW-Authenticate"); h != `Basic realm="Service-now"` {
			t.Errorf("WWW-Authenticate %q", h)
		}
		if body != `{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}` {
			t.Errorf("body %s", body)
		}
	}

	s2 := start(t, WithBasicAuth("svc.itsm.bridge", "s3cret"))
	resp, body := do(t, s2, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 401)
	resp, body = do(t, s2, req{path: "/api/now/table/sc_req_item", header: map[string]string{"Authorization": "Basic c3ZjLml0c20uYnJpZGdlOnMzY3JldA=="}})
	wantStatus(t, resp, body, 200)
}

type token struct {
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	AccessToken  string `json:"access_token"`
}

func postToken(t *testing.T, s *Server, form url.Values) (int, token, string) {
	t.Helper()
	resp, err := http.Post(s.URL()+"/oauth_token.do", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var tok token
	json.Unmarshal(raw, &tok)
	return resp.StatusCode, tok, string(raw)
}

func TestOAuth(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now), WithOAuth("client-id", "client-secret", 0))
	s.AddRITM(RITM{})

	status, tok, raw := postToken(t, s, url.Values{
		"grant_type": {"password"}, "client_id": {"client-id"}, "client_secret": {"client-secret"},
		"username": {DefaultUser}, "password": {DefaultPassword},
	})
	if status != 200 || tok.Scope != "useraccount" || tok.TokenType != "Bearer" || tok.ExpiresIn != 1799 || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("password grant: %d %s", status, raw)
	}
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item", bearer: tok.AccessToken})
	wantStatus(t, resp, body, 200)

	// Journal entries written with a token carry the token's user.
	id := list(t, body)[0]["sys_id"].(string)
	do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + id, body: `{"work_notes":"x"}`, bearer: tok.AccessToken})
	if j := s.Journal(id); len(j) != 1 || j[0].CreatedBy != DefaultUser {
		t.Errorf("journal %+v", j)
	}

	c.Advance(1798 * time.Second)
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item", bearer: tok.AccessToken})
	wantStatus(t, resp, body, 200)
	c.Advance(time.Second)
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item", bearer: tok.AccessToken})
	wantStatus(t, resp, body, 401)

	status, tok2, raw := postToken(t, s, url.Values{
		"grant_type": {"refresh_token"}, "client_id": {"client-id"}, "client_secret": {"client-secret"},
		"refresh_token": {tok.RefreshToken},
	})
	if status != 200 || tok2.AccessToken == "" || tok2.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %d %s", status, raw)
	}
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item", bearer: tok2.AccessToken})
	wantStatus(t, resp, body, 200)

	status, tok3, raw := postToken(t, s, url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-id"}, "client_secret": {"client-secret"}})
	if status != 200 || tok3.AccessToken == "" || tok3.RefreshToken != "" {
		t.Fatalf("client_credentials: %d %s", status, raw)
	}

	for _, form := range []url.Values{
		{"grant_type": {"client_credentials"}, "client_id": {"client-id"}, "client_secret": {"wrong"}},
		{"grant_type": {"password"}, "client_id": {"client-id"}, "client_secret": {"client-secret"}, "username": {DefaultUser}, "password": {"wrong"}},
		{"grant_type": {"refresh_token"}, "client_id": {"client-id"}, "client_secret": {"client-secret"}, "refresh_token": {"nope"}},
	} {
		status, _, raw := postToken(t, s, form)
		if status != 401 || raw != `{"error_description":"access_denied","error":"server_error"}` {
			t.Errorf("%v: %d %s", form, status, raw)
		}
	}

	// Without WithOAuth there is no token endpoint to speak of.
	s2 := start(t)
	if status, _, _ := postToken(t, s2, url.Values{"grant_type": {"client_credentials"}}); status != 401 {
		t.Errorf("no OAuth: %d", status)
	}
}

func TestRequestLog(t *testing.T) {
	s := start(t)
	do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_limit=1"})
	do(t, s, req{path: "/api/now/table/sc_req_item", noAuth: true})
	got := s.Requests()
	if len(got) != 2 || got[0].Method != "GET" || got[0].Path != "/api/now/table/sc_req_item" ||
		got[0].RawQuery != "sysparm_limit=1" || got[0].Status != 200 || got[1].Status != 401 || got[0].Time.IsZero() {
		t.Fatalf("requests %+v", got)
	}
	s.ResetRequests()
	if len(s.Requests()) != 0 {
		t.Fatal("not reset")
	}
}
