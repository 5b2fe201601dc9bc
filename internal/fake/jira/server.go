// Package jira is an in-process fake of the parts of a Jira instance (Cloud or
// Data Center) the bridge talks to. It serves, on a real loopback listener,
// the platform REST API under /rest/api/2 (and its alias /rest/api/latest):
//
//   - GET /serverInfo, GET /myself, GET /field, GET /resolution, GET /status,
//     GET /project/{key};
//   - issue search: on Cloud the enhanced GET|POST /search/jql (token paging),
//     on Data Center the legacy GET|POST /search (startAt paging);
//   - GET /issue/{idOrKey}, GET|POST /issue/{idOrKey}/transitions,
//     GET|POST /issue/{idOrKey}/comment, GET /issue/{idOrKey}/comment/{id},
//     GET /issue/{idOrKey}/properties and GET|PUT|DELETE
//     /issue/{idOrKey}/properties/{propertyKey}.
//
// The fake is meant to be faithful, including the behaviour that trips
// clients up:
//
//   - Cloud answers the legacy /search with 410 Gone (CHANGE-2046); Data
//     Center answers /search/jql with a Jersey 404 ({"message":"null for uri:
//     ...","status-code":404}) that go-jira decodes into an empty error.
//   - The enhanced search returns only issue ids unless fields are asked for,
//     rejects unbounded JQL, pages with an opaque token that expires after 7
//     days and sends no total. Both kinds of paging are positional: issues
//     that leave the result set between pages make later pages skip issues.
//   - JQL is parsed and validated like Jira does: unknown fields, unknown
//     project/status/issue type/resolution values, missing issue keys,
//     unquoted reserved words and characters, and operators a field does not
//     support (a text field only takes ~, !~, IS and IS NOT) are all 400s;
//     "!=" and "NOT IN" never match an issue whose field is empty.
//   - Transition ids depend on the issue's current status; resolution and
//     comment can only be sent to transitions with a screen; a transition
//     without a screen to a done status leaves the issue unresolved.
//   - Comments are limited to 32,767 characters (UTF-16 code units). On a
//     service-desk project (the default project type) a comment added over
//     REST is public: customers see it on the portal and are emailed;
//     only the sd.public.comment property {"internal": true} makes it
//     internal (Comment.Internal).
//   - GET /serverInfo is served without credentials, as Jira does.
//   - Reporters are accountId-only on Cloud and name/key/emailAddress on Data
//     Center; custom field ids are per instance.
//
// Faults (error statuses, rate limiting with Jira's headers, HTML pages,
// slow answers, dropped connections, writes that succeed but answer with an
// error) can be injected per request with InjectFault. WebhookDelivery builds
// signed admin webhook deliveries.
//
// It is used by the test suite and by "bridge demo".
package jira

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/fake/httpfake"
)

// Deployment types accepted by WithDeployment.
const (
	Cloud      = "cloud"
	DataCenter = "datacenter"
)

const (
	// DefaultEmail and DefaultAPIToken are the Basic auth credentials a Cloud
	// fake accepts unless WithBasicAuth says otherwise.
	DefaultEmail    = "bridge@example.com"
	DefaultAPIToken = "jira-api-token"
	// DefaultPAT is the personal access token a Data Center fake accepts
	// (Authorization: Bearer) unless WithPAT says otherwise.
	DefaultPAT = "jira-pat"

	// DefaultCommentLimit is Jira's default jira.text.field.character.limit.
	DefaultCommentLimit = 32767
)

// Server is a running fake Jira. All methods are safe for concurrent use.
type Server struct {
	srv   *httptest.Server
	front *httpfake.Handler[Fault] // request log, latency and faults

	// Settings, fixed by the options before the listener starts.
	deployment      string
	email, apiToken string
	pat             string
	dcBasic         bool // Data Center also takes basic auth (WithBasicAuth)
	noAnonymous     bool // serverInfo needs credentials too (WithoutAnonymousAccess)
	clock           func() time.Time
	contextPath     string
	commentLimit    int
	workflow        Workflow
	fields          []*customField
	fieldOverrides  []customField
	latency         time.Duration
	noRequestLog    bool

	mu           sync.Mutex
	issues       map[string]*issueRecord // by issue id
	keys         map[string]string       // upper-case key → issue id
	order        []string                // issue ids in insertion order
	nextIssueID  int
	keySeq       map[string]int // last issue number per project key
	projects     []*project
	issueTypes   []*issueType
	options      map[string]string // field id + "\x00" + lower value → option id
	nextOption   int
	nextComment  int
	changelogID  int
	gen          uint64                  // bumped by every change to an issue
	searches     map[string]cachedSearch // by JQL, see searchLocked
	jqlClock     bool                    // the query being compiled reads the clock
	approvals    map[string][]Approval   // JSM approvals by upper-case issue key
	projectTypes map[string]string       // upper-case project key → projectTypeKey (WithProjectType)
	groups       map[string][]User       // group name → members
}

// Option configures a Server.
type Option func(*Server)

// WithDeployment selects the kind of instance: "cloud" (default) or
// "datacenter". It decides authentication, the search endpoints, the shape of
// users, serverInfo's deploymentType ("Cloud" or "Server") and the rate-limit
// headers of an injected 429. Any other value panics in New.
func WithDeployment(d string) Option {
	return func(s *Server) { s.deployment = strings.ToLower(strings.TrimSpace(d)) }
}

// WithBasicAuth sets the account email and API token a Cloud fake accepts with
// Basic auth (default "bridge@example.com" / "jira-api-token"). The email is
// also the API user's emailAddress. A Data Center fake takes only its PAT
// unless given this option: then it also takes basic auth with this user
// name and password, as an instance that allows basic auth does.
func WithBasicAuth(email, apiToken string) Option {
	return func(s *Server) { s.email, s.apiToken, s.dcBasic = email, apiToken, true }
}

// WithPAT sets the personal access token a Data Center fake accepts as
// "Authorization: Bearer <token>" (default "jira-pat").
func WithPAT(token string) Option {
	return func(s *Server) { s.pat = token }
}

// WithProjectType sets the projectTypeKey of the project with key:
// "service_desk" (the default of every project: Jira Service Management, where
// comments are public to the request's customers unless made internal),
// "software" or "business".
func WithProjectType(key, typeKey string) Option {
	return func(s *Server) {
		if s.projectTypes == nil {
			s.projectTypes = map[string]string{}
		}
		s.projectTypes[strings.ToUpper(key)] = typeKey
	}
}

// WithoutAnonymousAccess makes serverInfo, too, answer 401 without
// credentials, as an instance behind an authenticating proxy does.
func WithoutAnonymousAccess() Option {
	return func(s *Server) { s.noAnonymous = true }
}

// WithClock sets the source of the current time (created, updated, comment
// times, token expiry, webhook timestamps). Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.clock = now }
}

// WithCustomField declares a custom field of this instance: its name, its id
// ("customfield_10050" or just "10050") and its kind, "text" (a single line
// text field: JSON string, searchable with ~) or "select" (a single select
// list: {"self","value","id"}, searchable with = and IN). A name that is
// already declared (names compare case-insensitively), including one of the
// defaults, is redeclared with the new id and kind. The defaults are "Image
// name" customfield_10050 text, "Justification" customfield_10051 text,
// "Environment" customfield_10052 select and "Team" customfield_10053 text.
// Two names with the same id, or another kind, panic in New.
func WithCustomField(name, id, kind string) Option {
	return func(s *Server) {
		s.fieldOverrides = append(s.fieldOverrides, customField{name: name, id: id, kind: kind})
	}
}

// WithWorkflow replaces the default workflow (see DefaultWorkflow). Statuses
// need unique names; a status without an ID gets one. Transitions name their
// From and To statuses by name or id. An inconsistent workflow panics in New.
func WithWorkflow(w Workflow) Option {
	return func(s *Server) { s.workflow = w.clone() }
}

// WithCommentLimit sets the longest comment accepted, in characters (UTF-16
// code units, as Jira counts them). Default 32767.
func WithCommentLimit(n int) Option {
	return func(s *Server) { s.commentLimit = n }
}

// WithContextPath serves the API under a context path, as a Data Center
// instance at https://host/jira does: WithContextPath("/jira") makes URL()
// end in /jira and every route live below it.
func WithContextPath(p string) Option {
	return func(s *Server) {
		p = "/" + strings.Trim(p, "/")
		if p == "/" {
			p = ""
		}
		s.contextPath = p
	}
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

// New starts a fake Jira on a loopback listener (127.0.0.1, random port). Call
// Close when done.
func New(opts ...Option) *Server {
	s := &Server{
		deployment:   Cloud,
		email:        DefaultEmail,
		apiToken:     DefaultAPIToken,
		pat:          DefaultPAT,
		clock:        time.Now,
		commentLimit: DefaultCommentLimit,
		workflow:     DefaultWorkflow(),
		issues:       map[string]*issueRecord{},
		keys:         map[string]string{},
		nextIssueID:  10001,
		keySeq:       map[string]int{},
		options:      map[string]string{},
		nextOption:   10200,
		nextComment:  10100,
		changelogID:  10900,
		projects:     []*project{{id: "10007", key: "IMG", name: "Image Requests"}},
		issueTypes:   []*issueType{{id: "10021", name: "Image Request", description: "Request for a Chainguard container image"}},
	}
	for _, o := range opts {
		o(s)
	}
	switch s.deployment {
	case Cloud, DataCenter:
	default:
		panic(fmt.Sprintf("jira fake: unknown deployment %q (want %q or %q)", s.deployment, Cloud, DataCenter))
	}
	s.fields = buildCustomFields(s.fieldOverrides)
	if err := s.workflow.normalize(); err != nil {
		panic("jira fake: " + err.Error())
	}
	s.front = s.newHandler()
	s.srv = httptest.NewServer(s.front)
	return s
}

// URL returns the base URL of the instance, such as http://127.0.0.1:41234
// (followed by the context path, if any). Pass it to jira.NewClient.
func (s *Server) URL() string { return s.srv.URL + s.contextPath }

// Close shuts the listener down and waits for requests in flight; delayed
// answers are cut short.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Deployment returns "cloud" or "datacenter".
func (s *Server) Deployment() string { return s.deployment }

func (s *Server) cloud() bool { return s.deployment == Cloud }

// now returns the current time in UTC, truncated to milliseconds, the
// resolution of Jira's timestamps.
func (s *Server) now() time.Time { return jiraTime(s.clock()) }

func jiraTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// timeLayout is how Jira renders date-times in the REST API (go-jira's
// jira.Time parses it).
const timeLayout = "2006-01-02T15:04:05.000-0700"

func formatTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeLayout)
}

// Request is one request received by the fake.
type Request = httpfake.Request

// Requests returns every request received since the start or the last
// ResetRequests, in arrival order.
func (s *Server) Requests() []Request { return s.front.Requests() }

// ResetRequests forgets the requests received so far.
func (s *Server) ResetRequests() { s.front.ResetRequests() }

// serve answers a request as the instance would.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !s.authenticate(r) && !s.anonymous(r) {
		writeUnauthenticated(w, r)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, s.contextPath)
	if !ok {
		s.writeNotFound(w, r)
		return
	}
	if sd, ok := strings.CutPrefix(path, "/rest/servicedeskapi/request/"); ok {
		if key, ok := strings.CutSuffix(strings.TrimSuffix(sd, "/"), "/approval"); ok && !strings.Contains(key, "/") {
			s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.serveApprovals(w, r, key) })
			return
		}
		s.writeNotFound(w, r)
		return
	}
	rest, ok := strings.CutPrefix(path, "/rest/api/2/")
	if !ok {
		rest, ok = strings.CutPrefix(path, "/rest/api/latest/")
	}
	if !ok {
		s.writeNotFound(w, r)
		return
	}
	seg := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case rest == "group/member":
		s.only(w, r, http.MethodGet, s.serveGroupMembers)
	case rest == "serverInfo":
		s.only(w, r, http.MethodGet, s.serveServerInfo)
	case rest == "myself":
		s.only(w, r, http.MethodGet, s.serveMyself)
	case rest == "field":
		s.only(w, r, http.MethodGet, s.serveFields)
	case rest == "resolution":
		s.only(w, r, http.MethodGet, s.serveResolutions)
	case rest == "status":
		s.only(w, r, http.MethodGet, s.serveStatuses)
	case seg[0] == "project" && len(seg) == 2:
		s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.serveProject(w, seg[1]) })
	case rest == "search":
		s.serveLegacySearch(w, r)
	case rest == "search/jql":
		s.serveSearchJQL(w, r)
	case seg[0] == "issue" && len(seg) >= 2 && seg[1] != "":
		s.serveIssueRoutes(w, r, seg[1], seg[2:])
	default:
		s.writeNotFound(w, r)
	}
}

// only runs h if the request uses method, else answers 405.
func (s *Server) only(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method != method {
		writeMethodNotAllowed(w, method)
		return
	}
	h(w, r)
}

// authenticate checks the request's credentials: Basic email:API token on
// Cloud, Bearer PAT on Data Center (or Basic, with WithBasicAuth).
func (s *Server) authenticate(r *http.Request) bool {
	if s.cloud() || s.dcBasic {
		if u, p, ok := r.BasicAuth(); ok {
			return u == s.email && p == s.apiToken
		}
		if s.cloud() {
			return false
		}
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) == s.pat
}

// anonymous reports whether r may be served without credentials: GET
// serverInfo "can be accessed anonymously" on both deployments, when no
// credentials are sent (credentials sent and refused are a 401 everywhere).
func (s *Server) anonymous(r *http.Request) bool {
	if s.noAnonymous || r.Method != http.MethodGet || r.Header.Get("Authorization") != "" {
		return false
	}
	p := strings.TrimPrefix(r.URL.Path, s.contextPath)
	return p == "/rest/api/2/serverInfo" || p == "/rest/api/latest/serverInfo"
}

// baseURL is the prefix of self links.
func (s *Server) baseURL() string { return s.URL() }

func (s *Server) apiURL(path string) string { return s.baseURL() + "/rest/api/2/" + path }

// Error bodies Jira sends, for use as Fault.Body or in assertions.
var (
	// UnauthenticatedBody is the answer to a request without valid credentials.
	UnauthenticatedBody = errorJSON([]string{"You are not authenticated. Authentication required to perform this operation."}, nil)
	// IssueNotFoundBody is the 404 of an unknown (or invisible) issue.
	IssueNotFoundBody = errorJSON([]string{"Issue does not exist or you do not have permission to see it."}, nil)
	// SearchRemovedBody is Cloud's 410 answer to the legacy /search (CHANGE-2046).
	SearchRemovedBody = errorJSON([]string{"The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"}, nil)
	// UnboundedJQLBody is the enhanced search's 400 for JQL without a restriction.
	UnboundedJQLBody = errorJSON([]string{"Unbounded JQL queries are not allowed here. Please add a search restriction to your query."}, nil)
	// RateLimitedBody is the body of a 429.
	RateLimitedBody = errorJSON([]string{"The request has been rate-limited. Please try again later."}, nil)
	// LegacyErrorsArrayBody is an error body in the legacy shape some servers
	// send, with "errors" as an array: go-jira fails to decode it ("could not
	// parse JSON").
	LegacyErrorsArrayBody = `{"errorMessages":["Something went wrong"],"errors":["legacy servers sometimes return an array here"]}`
)

// errorJSON renders {"errorMessages":[...],"errors":{...}}.
func errorJSON(messages []string, errs object) string {
	if messages == nil {
		messages = []string{}
	}
	if errs == nil {
		errs = object{}
	}
	b, _ := marshal(object{{"errorMessages", messages}, {"errors", errs}})
	return string(b)
}

// writeError answers with Jira's error envelope.
func writeError(w http.ResponseWriter, status int, messages []string, errs object) {
	writeRaw(w, status, []byte(errorJSON(messages, errs)))
}

// writeFieldErrors answers 400 with per-field errors only.
func writeFieldErrors(w http.ResponseWriter, errs object) {
	writeError(w, http.StatusBadRequest, nil, errs)
}

// writeUnauthenticated answers a request without valid credentials. Like
// Jira, it adds X-Seraph-LoginReason when credentials were sent but refused.
func writeUnauthenticated(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		w.Header().Set("X-Seraph-LoginReason", "AUTHENTICATED_FAILED")
	}
	writeRaw(w, http.StatusUnauthorized, []byte(UnauthenticatedBody))
}

// NotFoundBody is the Jersey 404 both deployments send for a path no
// resource serves (for example /rest/api/2/search/jql on Data Center), with
// uri the full request URL.
func NotFoundBody(uri string) string {
	b, _ := marshal(object{{"message", "null for uri: " + uri}, {"status-code", http.StatusNotFound}})
	return string(b)
}

func (s *Server) writeNotFound(w http.ResponseWriter, r *http.Request) {
	writeRaw(w, http.StatusNotFound, []byte(NotFoundBody("http://"+r.Host+r.URL.RequestURI())))
}

func writeMethodNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ","))
	writeError(w, http.StatusMethodNotAllowed, []string{"HTTP 405 Method Not Allowed"}, nil)
}

const jsonContentType = httpfake.JSONContentType

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, []string{err.Error()}, nil)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) { httpfake.WriteRaw(w, status, body) }

// writeNoContent answers 204 (a successful transition).
func writeNoContent(w http.ResponseWriter) {
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(http.StatusNoContent)
}

// readJSON decodes the request body into v, answering 400 as Jira does when
// it is not JSON.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, []string{"Unexpected character in the request body: " + err.Error()}, nil)
		return false
	}
	return true
}

// marshal encodes v as JSON without escaping <, > and &, like Jira.
func marshal(v any) ([]byte, error) { return httpfake.AppendJSON[object](nil, v) }

// object is a JSON object that keeps its keys in order.
type object []member

type member struct {
	key   string
	value any
}

func (m member) KeyValue() (string, any) { return m.key, m.value }

func (o object) MarshalJSON() ([]byte, error) { return marshal(o) }

// get returns the value of key, if present.
func (o object) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

// serveServerInfo answers GET /serverInfo.
func (s *Server) serveServerInfo(w http.ResponseWriter, r *http.Request) {
	now := formatTime(s.now())
	if s.cloud() {
		writeJSON(w, http.StatusOK, object{
			{"baseUrl", s.baseURL()},
			{"displayUrl", s.baseURL()},
			{"version", "1001.0.0-SNAPSHOT"},
			{"versionNumbers", []int{1001, 0, 0}},
			{"deploymentType", "Cloud"},
			{"buildNumber", 100289},
			{"buildDate", "2025-10-13T00:00:00.000+0000"},
			{"serverTime", now},
			{"scmInfo", "3b8f1e0c7a9d2b4e6f1a0c3d5e7f9a1b2c4d6e8f"},
			{"serverTitle", "Jira"},
			{"defaultLocale", object{{"locale", "en_US"}}},
			{"serverTimeZone", "Etc/UTC"},
		})
		return
	}
	writeJSON(w, http.StatusOK, object{
		{"baseUrl", s.baseURL()},
		{"version", "9.12.15"},
		{"versionNumbers", []int{9, 12, 15}},
		{"deploymentType", "Server"},
		{"buildNumber", 9120015},
		{"buildDate", "2024-10-01T00:00:00.000+0000"},
		{"databaseBuildNumber", 9120015},
		{"serverTime", now},
		{"scmInfo", "8a5c2d1e9f0b3a4c6d7e8f9a0b1c2d3e4f5a6b7c"},
		{"serverTitle", "Jira"},
	})
}

// Myself returns the user the API credentials act as: the author of every
// comment the bridge posts.
func (s *Server) Myself() User {
	if s.cloud() {
		return User{
			AccountID:   "712020:2c9e1f7a-8b3d-4e6f-a1b2-c3d4e5f6a7b8",
			DisplayName: "Image Request Bridge",
			Email:       s.email,
		}
	}
	return User{Name: "image-bridge", Key: "JIRAUSER10000", DisplayName: "Image Request Bridge", Email: DefaultEmail}
}

// serveMyself answers GET /myself. Unlike other users, the caller's own email
// is visible on Cloud.
func (s *Server) serveMyself(w http.ResponseWriter, r *http.Request) {
	me := s.Myself()
	u := s.userJSON(me)
	if s.cloud() {
		u = append(u[:3:3], append(object{{"emailAddress", me.Email}}, u[3:]...)...)
	}
	u = append(u,
		member{"locale", "en_US"},
		member{"groups", object{{"size", 1}, {"items", []any{}}}},
		member{"applicationRoles", object{{"size", 1}, {"items", []any{}}}},
		member{"expand", "groups,applicationRoles"},
	)
	writeJSON(w, http.StatusOK, u)
}

// userJSON renders a user the way the deployment does: accountId and
// accountType without name, key or email on Cloud; name, key and emailAddress
// on Data Center.
func (s *Server) userJSON(u User) object {
	if s.cloud() {
		return object{
			{"self", s.apiURL("user?accountId=" + url.QueryEscape(u.AccountID))},
			{"accountId", u.AccountID},
			{"avatarUrls", avatarURLs(func(size string) string {
				return "https://avatar-management.example/" + url.PathEscape(u.AccountID) + "/" + size + ".png"
			})},
			{"displayName", u.DisplayName},
			{"active", true},
			{"timeZone", "Etc/UTC"},
			{"accountType", "atlassian"},
		}
	}
	return object{
		{"self", s.apiURL("user?username=" + url.QueryEscape(u.Name))},
		{"name", u.Name},
		{"key", u.Key},
		{"emailAddress", u.Email},
		{"avatarUrls", avatarURLs(func(size string) string {
			return s.baseURL() + "/secure/useravatar?size=" + size + "&ownerId=" + url.QueryEscape(u.Key)
		})},
		{"displayName", u.DisplayName},
		{"active", true},
		{"timeZone", "Etc/UTC"},
	}
}

func avatarURLs(at func(size string) string) object {
	return object{
		{"48x48", at("48")},
		{"24x24", at("24")},
		{"16x16", at("16")},
		{"32x32", at("32")},
	}
}

// readAll reads the request body.
func readAll(r *http.Request) ([]byte, error) { return io.ReadAll(r.Body) }
