// Package servicenow is an in-process fake of the parts of a ServiceNow
// instance the bridge talks to. It serves, on a real loopback listener:
//
//   - the Table API (/api/now/table/..., /api/now/v1/table/...,
//     /api/now/v2/table/...) for sc_req_item (requested items, readable and
//     writable), sys_journal_field (work notes and comments) and
//     sc_item_option_mtom (catalog variable answers);
//   - the OAuth token endpoint POST /oauth_token.do.
//
// The fake is meant to be faithful, including the behaviour that trips
// clients up: every scalar is a JSON string; reference fields are
// {"link","value"} objects unless sysparm_exclude_reference_link=true;
// unknown fields in sysparm_query are silently dropped, so a typo returns
// every row; v1 answers 404 to an empty list; journal fields read back as ""
// in value mode; sc_item_option_mtom shows no answers unless the dot-walked
// fields are requested; Link and X-Total-Count headers drive paging. Faults
// (error statuses, rate limiting, HTML from a hibernating instance, slow
// answers, dropped connections, writes that succeed but answer with an error)
// can be injected per request with InjectFault.
//
// It is used by the test suite and by "bridge demo".
package servicenow

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/fake/httpfake"
)

const (
	// DefaultUser and DefaultPassword are the Basic auth credentials the fake
	// accepts unless WithBasicAuth says otherwise.
	DefaultUser     = "bridge"
	DefaultPassword = "bridge-password"

	// DefaultTokenTTL is the lifetime of an OAuth access token, as on a
	// default instance (expires_in 1799).
	DefaultTokenTTL = 1799 * time.Second

	// refreshTokenTTL is the platform default refresh token lifetime (100 days).
	refreshTokenTTL = 100 * 24 * time.Hour
)

// Server is a running fake instance. All methods are safe for concurrent use.
type Server struct {
	srv   *httptest.Server
	front *httpfake.Handler[Fault] // request log, latency and faults

	// Settings, fixed by the options before the listener starts.
	user, password  string
	oauth           *oauthConfig
	clock           func() time.Time
	invalidNoRows   bool
	journalReadable bool
	loc             *time.Location
	vars            []variableDef
	latency         time.Duration
	noRequestLog    bool

	mu      sync.Mutex
	ritms   map[string]*RITM
	order   []string // RITM sys_ids in insertion order
	journal []JournalEntry
	// journalBy indexes journal by the RITM's sys_id, oldest first.
	journalBy   map[string][]int
	index       ritmIndex
	seq         int
	display     map[string]string // reference display values by sys_id
	approvals   []Approval        // sysapproval_approver records
	members     []GroupMember     // sys_user_grmember records
	flow        func(*RITM)
	writeDenied map[string]bool  // sc_req_item fields a write ACL denies (DenyFieldWrite)
	tokens      map[string]grant // access tokens
	refresh     map[string]grant // refresh tokens
}

type oauthConfig struct {
	clientID, clientSecret string
	ttl                    time.Duration
}

// grant is an issued OAuth token.
type grant struct {
	user    string
	expires time.Time
}

// Option configures a Server.
type Option func(*Server)

// WithBasicAuth sets the only user name and password accepted with Basic
// auth (default "bridge" / "bridge-password"). That user is also the one
// OAuth tokens act as.
func WithBasicAuth(user, password string) Option {
	return func(s *Server) { s.user, s.password = user, password }
}

// WithOAuth registers an OAuth application: POST /oauth_token.do then mints
// Bearer tokens for grant_type=password (with the Basic auth user name and
// password), client_credentials and refresh_token, and the Table API accepts
// them besides Basic auth. Access tokens expire after ttl (0 means
// DefaultTokenTTL); an expired or unknown Bearer token answers 401. Without
// this option the token endpoint refuses every request.
func WithOAuth(clientID, clientSecret string, ttl time.Duration) Option {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return func(s *Server) { s.oauth = &oauthConfig{clientID, clientSecret, ttl} }
}

// WithClock sets the source of the current time (sys_updated_on, closed_at,
// journal entries, token expiry). Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.clock = now }
}

// WithInvalidQueryReturnsNoRows emulates glide.invalid_query.returns_no_rows
// =true: a sysparm_query naming an unknown field matches nothing. By default,
// as on a real instance, the unknown term is dropped and the rest still runs.
func WithInvalidQueryReturnsNoRows() Option {
	return func(s *Server) { s.invalidNoRows = true }
}

// WithJournalReadable sets whether the API user holds the read ACL on
// sys_journal_field (default true). Without it, lists of that table come back
// 200 {"result":[]} and single records 404, not an error naming the ACL.
func WithJournalReadable(ok bool) Option {
	return func(s *Server) { s.journalReadable = ok }
}

// WithTimeZone sets the API user's time zone, used for date-time display
// values (sysparm_display_value=true|all and the journal log). Default UTC.
// Values stay in UTC.
func WithTimeZone(loc *time.Location) Option {
	return func(s *Server) { s.loc = loc }
}

// WithVariable declares a catalog variable: its question text and type code
// as shown by sc_item_option_mtom ("6" single line text, "2" multi line text,
// "5" select box, ...). Declared variables are listed first, in declaration
// order. Undeclared variables use their name as question text and type "6".
func WithVariable(name, questionText, typ string) Option {
	return func(s *Server) { s.vars = append(s.vars, variableDef{name, questionText, typ}) }
}

// WithLatency holds every answer back by d, measured from the request's
// arrival, as a remote instance's round trip does (network and server time).
// The request is served after the delay; a client that gives up first gets
// nothing and nothing happens. Injected faults add their own Delay on top.
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// WithoutRequestLog stops the fake from keeping every request it receives:
// Requests then returns nothing. Long load runs use it so that the fake's
// memory and garbage collection stay flat.
func WithoutRequestLog() Option {
	return func(s *Server) { s.noRequestLog = true }
}

// New starts a fake instance on a loopback listener (127.0.0.1, random port).
// Call Close when done.
func New(opts ...Option) *Server {
	s := &Server{
		user:            DefaultUser,
		password:        DefaultPassword,
		clock:           time.Now,
		journalReadable: true,
		loc:             time.UTC,
		ritms:           map[string]*RITM{},
		journalBy:       map[string][]int{},
		display:         map[string]string{},
		tokens:          map[string]grant{},
		refresh:         map[string]grant{},
	}
	for _, o := range opts {
		o(s)
	}
	s.front = s.newHandler()
	s.srv = httptest.NewServer(s.front)
	return s
}

// URL returns the instance URL, such as http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the listener down and waits for requests in flight; delayed
// answers are cut short.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// now returns the current platform time: UTC, whole seconds.
func (s *Server) now() time.Time { return platformTime(s.clock()) }

// Request is one request received by the fake.
type Request = httpfake.Request

// Requests returns every request received since the start or the last
// ResetRequests, in arrival order.
func (s *Server) Requests() []Request { return s.front.Requests() }

// ResetRequests forgets the requests received so far.
func (s *Server) ResetRequests() { s.front.ResetRequests() }

// serve answers a request as the instance would.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth_token.do" {
		s.serveToken(w, r)
		return
	}
	user, ok := s.authenticate(r)
	if !ok {
		writeUnauthenticated(w)
		return
	}
	s.serveTable(w, r, user)
}

// authenticate returns the user name the request acts as.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	if u, p, ok := r.BasicAuth(); ok {
		return u, u == s.user && p == s.password
	}
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || s.oauth == nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tokens[strings.TrimSpace(token)]
	if !ok || !s.clock().Before(g.expires) {
		return "", false
	}
	return g.user, true
}

// tokenResponse is the body of a successful POST /oauth_token.do.
type tokenResponse struct {
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	AccessToken  string `json:"access_token"`
}

// serveToken implements POST /oauth_token.do. The client may authenticate
// with client_id/client_secret form fields or with Basic auth. The
// client_credentials grant issues no refresh token; a refresh keeps the same
// refresh token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if s.oauth == nil || r.Method != http.MethodPost || r.ParseForm() != nil {
		writeTokenDenied(w)
		return
	}
	form := r.PostForm
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if id == "" {
		id, secret, _ = r.BasicAuth()
	}
	if id != s.oauth.clientID || secret != s.oauth.clientSecret {
		writeTokenDenied(w)
		return
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var refresh string
	switch form.Get("grant_type") {
	case "password":
		if form.Get("username") != s.user || form.Get("password") != s.password {
			writeTokenDenied(w)
			return
		}
		refresh = randomToken()
		s.refresh[refresh] = grant{user: s.user, expires: now.Add(refreshTokenTTL)}
	case "client_credentials":
	case "refresh_token":
		refresh = form.Get("refresh_token")
		g, ok := s.refresh[refresh]
		if !ok || !now.Before(g.expires) {
			writeTokenDenied(w)
			return
		}
	default:
		writeTokenDenied(w)
		return
	}
	access := randomToken()
	s.tokens[access] = grant{user: s.user, expires: now.Add(s.oauth.ttl)}
	writeJSON(w, http.StatusOK, tokenResponse{
		Scope:        "useraccount",
		TokenType:    "Bearer",
		ExpiresIn:    int(s.oauth.ttl / time.Second),
		RefreshToken: refresh,
		AccessToken:  access,
	})
}

func randomToken() string {
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeTokenDenied answers a refused token request.
func writeTokenDenied(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, object{
		{"error_description", "access_denied"},
		{"error", "server_error"},
	})
}

// errorBody is the Table API error shape:
// {"error":{"message":…,"detail":…},"status":"failure"}.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Detail  *string `json:"detail"`
	} `json:"error"`
	Status string `json:"status"`
}

func errorJSON(message string, detail *string) []byte {
	var e errorBody
	e.Error.Message, e.Error.Detail, e.Status = message, detail, "failure"
	b, _ := marshal(e)
	return b
}

func strPtr(s string) *string { return &s }

// writeError answers with a Table API error body; a nil detail is null.
func writeError(w http.ResponseWriter, status int, message string, detail *string) {
	writeRaw(w, status, errorJSON(message, detail))
}

// writeUnauthenticated answers a request without valid credentials.
func writeUnauthenticated(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="Service-now"`)
	writeError(w, http.StatusUnauthorized, "User Not Authenticated", strPtr("Required to provide Auth information"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) { httpfake.WriteRaw(w, status, body) }

// marshal encodes v as JSON without escaping <, > and &, like the platform.
func marshal(v any) ([]byte, error) { return httpfake.AppendJSON[object](nil, v) }

// object is a JSON object that keeps its keys in order.
type object []member

type member struct {
	key   string
	value any
}

func (m member) KeyValue() (string, any) { return m.key, m.value }

func (o object) MarshalJSON() ([]byte, error) { return marshal(o) }
