package jira

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	jira "github.com/andygrunwald/go-jira"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

// Name is the source's name in the store, logs and notes.
const Name = "jira"

// Options configure the source; zero values take the defaults shown.
type Options struct {
	URL        string // https://example.atlassian.net, or a Data Center base URL with its context path
	Deployment string // cloud | datacenter | auto (default auto: asks /rest/api/2/serverInfo, anonymously)
	// Auth is how APIToken is sent: basic (with Email) or bearer; "" or auto
	// follows the deployment: basic on Cloud, bearer on Data Center.
	Auth     string
	Email    string        // basic auth: the Cloud account's email, or a Data Center user name
	APIToken secret.Secret // Cloud: API token; Data Center: personal access token (or password with Auth basic)
	JQL      string        // approved, open requests, e.g. project = IMG AND status = Approved
	// Fields, by name ("Image name") or id ("customfield_10050").
	ImageField         string
	JustificationField string
	ExtraFields        []string
	// Transitions by name; when none of that name is available from an issue's
	// status, the one leading to a status of that name is used.
	DoneTransition     string // default "Done"
	RejectedTransition string // default "Reject"
	// ApproveTransition is taken first on an issue the auto policy tier
	// serves while it still awaits approval (e.g. "Approve"); "" = none.
	ApproveTransition string
	PageSize          int           // issues per search page (default 50)
	Timeout           time.Duration // per HTTP request (default 30s)
	RetryMax          int           // retries of a read in place (default 4; negative: none)
	RetryWaitMax      time.Duration // longest wait between retries and longest Retry-After honoured in place (default 30s)
	RecheckTimeout    time.Duration // bound of the read after a write whose answer was lost, retries included (default 15s)
	Logger            zerolog.Logger
	// WrapTransport, when set, wraps the HTTP transport each attempt goes
	// through (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Limiter paces the calls to Jira and holds its pause when it asks for a
	// long rest (nil: pauses only). Use it rather than a limiter in
	// WrapTransport.
	Limiter *ratelimit.Limiter
	// AwaitingJQL, when set, selects requests still awaiting approval, listed
	// marked AwaitingApproval for the auto policy tier
	// (e.g. project = IMG AND status = "Waiting for approval").
	AwaitingJQL string
	// CommentVisibility: internal (default) marks every comment with the
	// Jira Service Management property sd.public.comment {"internal": true},
	// so that only agents see it (on other project types the property
	// changes nothing); public leaves comments as REST makes them, visible
	// to the request's customers, who are emailed.
	CommentVisibility string
}

// Source reads and reports Jira issues.
type Source struct {
	o  Options
	c  *jira.Client
	up *upstream.Client

	mu         stdsync.Mutex
	trCache    map[string]cachedTransitions // by workflowField
	trFetch    singleflight.Group           // one transition read per workflowField at a time
	maySkip    bool                         // the last Approved may have skipped issues (PagingMaySkip)
	ready      bool
	deployment string // resolved: cloud or datacenter (set by init)

	resMu    stdsync.Mutex     // held while the deployment is resolved
	resolved atomic.Value      // string: cloud or datacenter, once resolved
	auth     atomic.Value      // string: AuthBasic or AuthBearer, once known
	ids      map[string]string // configured field (name or id) → field id
	where    string            // the JQL without its ORDER BY, for Get
}

// New validates o and builds the source. It makes no request: the deployment
// and field ids are resolved on first use (and retried until they resolve).
func New(o Options) (*Source, error) {
	if o.Deployment == "" {
		o.Deployment = Auto
	}
	if o.Deployment != Cloud && o.Deployment != DataCenter && o.Deployment != Auto {
		return nil, fmt.Errorf("jira: deployment %q: want cloud, datacenter or auto", o.Deployment)
	}
	if o.Auth == Auto {
		o.Auth = ""
	}
	if o.Auth != "" && o.Auth != AuthBasic && o.Auth != AuthBearer {
		return nil, fmt.Errorf("jira: auth %q: want basic, bearer or auto", o.Auth)
	}
	if o.Auth == AuthBasic && o.Email == "" {
		return nil, errors.New("jira: auth basic needs an email (Cloud) or user name (Data Center)")
	}
	if o.CommentVisibility == "" {
		o.CommentVisibility = VisibilityInternal
	}
	if o.CommentVisibility != VisibilityInternal && o.CommentVisibility != VisibilityPublic {
		return nil, fmt.Errorf("jira: comment_visibility %q: want internal or public", o.CommentVisibility)
	}
	if strings.TrimSpace(o.JQL) == "" {
		return nil, errors.New("jira: jql is required (for example: project = IMG AND status = Approved)")
	}
	if o.ImageField == "" {
		return nil, errors.New("jira: fields.image is required (the field's name, e.g. \"Image name\", or its id, customfield_N)")
	}
	if o.DoneTransition == "" {
		o.DoneTransition = DefaultTransitionDone
	}
	if o.RejectedTransition == "" {
		o.RejectedTransition = DefaultTransitionReject
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = upstream.DefaultRetryWaitMax
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("jira: url %q is not an absolute URL", o.URL)
	}
	s := &Source{o: o}
	// Cloud: basic auth with email + API token. Data Center: the token is a
	// personal access token sent as a Bearer, whether or not an email is
	// given; jira.auth overrides it. With deployment auto the scheme is
	// known once serverInfo has answered.
	switch {
	case o.Auth != "":
		s.auth.Store(o.Auth)
	case o.Deployment != Auto:
		s.auth.Store(schemeOf(o.Deployment))
	}
	up := newUpstream(o.Email, o.APIToken, s.scheme, upstream.Options{
		Timeout:        o.Timeout,
		RetryMax:       o.RetryMax,
		RetryWaitMax:   o.RetryWaitMax,
		RecheckTimeout: o.RecheckTimeout,
		Limiter:        o.Limiter,
		WrapTransport:  o.WrapTransport,
	})
	c, err := jira.NewClient(up.HTTPClient(), o.URL)
	if err != nil {
		return nil, fmt.Errorf("jira: %w", err)
	}
	s.c, s.up = c, up
	s.where, _ = splitOrderBy(o.JQL)
	return s, nil
}

// schemeOf is the authentication a deployment takes by default.
func schemeOf(deployment string) string {
	if deployment == Cloud {
		return AuthBasic
	}
	return AuthBearer
}

// scheme is how the token is sent: the configured or resolved scheme, or,
// before an auto deployment is resolved, basic when an email is given.
func (s *Source) scheme() string {
	if a, _ := s.auth.Load().(string); a != "" {
		return a
	}
	if s.o.Email != "" {
		return AuthBasic
	}
	return AuthBearer
}

// resolvedDeployment is cloud or datacenter once known, else "".
func (s *Source) resolvedDeployment() string {
	d, _ := s.resolved.Load().(string)
	return d
}

// resolve fixes the deployment and with it the authentication, once. With
// deployment auto it asks GET /rest/api/2/serverInfo without credentials
// (Jira answers it anonymously), so that the first authenticated call sends
// the credentials the deployment takes; an instance that refuses anonymous
// access is taken to be Cloud on an Atlassian host, else Data Center.
func (s *Source) resolve(ctx context.Context) (string, error) {
	s.resMu.Lock()
	defer s.resMu.Unlock()
	if d := s.resolvedDeployment(); d != "" {
		return d, nil
	}
	dep := s.o.Deployment
	if dep == Auto {
		d, err := s.serverDeployment(ctx)
		switch st := upstream.StatusOf(err); {
		case err == nil:
			dep = d
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			dep = DataCenter
			if atlassianHosted(s.o.URL) {
				dep = Cloud
			}
			s.o.Logger.Warn().Str("source", Name).Str("deployment", dep).Msg("Jira refused an anonymous serverInfo; the deployment is taken from the URL: set jira.deployment to be sure")
		default:
			return "", s.classify(fmt.Errorf("detecting the Jira deployment: %w", err))
		}
	}
	if s.o.Auth == "" {
		s.auth.Store(schemeOf(dep))
	}
	s.resolved.Store(dep)
	return dep, nil
}

// deploymentName is how Atlassian names a deployment.
func deploymentName(d string) string {
	if d == Cloud {
		return "Cloud"
	}
	return "Data Center"
}

// serverDeployment asks GET /rest/api/2/serverInfo, without credentials,
// whether the instance is cloud or datacenter.
func (s *Source) serverDeployment(ctx context.Context) (string, error) {
	var info struct {
		DeploymentType string `json:"deploymentType"`
	}
	if err := s.doJSON(anonymous(ctx), http.MethodGet, "rest/api/2/serverInfo", nil, &info); err != nil {
		return "", err
	}
	if strings.EqualFold(info.DeploymentType, "Cloud") {
		return Cloud, nil
	}
	return DataCenter, nil
}

// refused explains a 401 to the first authenticated call: when the
// instance (asked anonymously) is not the deployment configured, the fix is
// jira.deployment, which also decides the credentials sent; otherwise
// classify names the refused credentials.
func (s *Source) refused(ctx context.Context, err error) error {
	if upstream.StatusOf(err) != http.StatusUnauthorized || s.o.Deployment == Auto || s.o.Auth != "" {
		// With jira.auth set, the deployment does not decide the credentials.
		return s.classify(err)
	}
	actual, ierr := s.serverDeployment(ctx)
	if ierr != nil || actual == s.o.Deployment {
		return s.classify(err)
	}
	sent := "sends the token as a Bearer personal access token"
	if s.scheme() == AuthBasic {
		sent = "sends the token with basic auth"
	}
	return isync.Blocked("jira:config", fmt.Sprintf("Jira refused the credentials: %s is Jira %s, but jira.deployment is %s, which %s; set jira.deployment: %s (or auto)",
		s.o.URL, deploymentName(actual), s.o.Deployment, sent, actual), err)
}

// Name implements isync.Source.
func (s *Source) Name() string { return Name }

// init resolves the deployment (from /rest/api/2/serverInfo when auto) and the
// configured fields' ids (from /rest/api/2/field), once.
func (s *Source) init(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return nil
	}
	dep, err := s.resolve(ctx)
	if err != nil {
		return err
	}
	fields, resp, err := s.c.Field.GetListWithContext(ctx)
	if err != nil {
		return s.refused(ctx, fmt.Errorf("listing Jira fields: %w", s.apiErr(http.MethodGet, "/rest/api/2/field", resp, err)))
	}
	ids := map[string]string{}
	for _, want := range append([]string{s.o.ImageField, s.o.JustificationField}, s.o.ExtraFields...) {
		if want == "" {
			continue
		}
		id, err := resolveField(fields, want)
		if err != nil {
			return isync.Blocked("jira:config", err.Error(), err)
		}
		ids[want] = id
	}
	s.deployment, s.ids, s.ready = dep, ids, true
	s.o.Logger.Info().Str("source", Name).Str("deployment", dep).Str("auth", s.scheme()).Interface("fields", ids).Msg("Jira connection resolved")
	return nil
}

// resolveField finds a field by id, or by name (case-insensitive); a name
// shared by several fields is ambiguous and must be given as an id.
func resolveField(fields []jira.Field, want string) (string, error) {
	var byName []jira.Field
	for _, f := range fields {
		if f.ID == want || f.Key == want {
			return f.ID, nil
		}
		if strings.EqualFold(strings.TrimSpace(f.Name), strings.TrimSpace(want)) {
			byName = append(byName, f)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0].ID, nil
	case 0:
		return "", fmt.Errorf("jira: no field named or with id %q is visible to the integration account (check jira.fields and the field's screens)", want)
	default:
		var ids []string
		for _, f := range byName {
			ids = append(ids, f.ID)
		}
		return "", fmt.Errorf("jira: several fields are named %q (%s): configure one by its id", want, strings.Join(ids, ", "))
	}
}

func (s *Source) searchFields() []string {
	f := []string{"status", "resolution", "reporter", "updated", "summary", "project", "issuetype"}
	for _, id := range s.ids {
		f = append(f, id)
	}
	return f
}

var _ isync.Relister = (*Source)(nil)

// PagingMaySkip implements isync.Relister: whether the last Approved may have
// skipped issues. Neither Data Center's startAt nor Cloud's nextPageToken can
// be trusted to skip nothing while the bridge moves issues out of the result.
// Approved's sweeps find most skipped issues while the bridge works; when its
// last sweep of a search still took several pages, issues may have shifted
// past it, and the engine lists again once the work is done.
func (s *Source) PagingMaySkip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maySkip
}

// maxSweeps bounds the searches of one listing (see Approved).
const maxSweeps = 32

// Approved implements isync.Source. Issues are handed on page by page, as the
// search returns them, so that the bridge works while it pages and never
// holds the whole result. The bridge transitions issues out of the JQL result
// meanwhile, and neither offset paging (Data Center) nor a token (Cloud) can
// be trusted to skip nothing while the result shrinks; so a search that took
// more than one page and handed on new issues is run again from the start,
// handing on only the issues not seen yet in this listing, until a search
// finds none (at most maxSweeps searches; an issue approved after the last
// one is listed by the next pass). An issue the bridge could not close (a
// retry, a blocked one) stays in the result and is handed on once.
func (s *Source) Approved(ctx context.Context, fn func(isync.Ticket) error) error {
	if err := s.init(ctx); err != nil {
		return err
	}
	seen := map[string]bool{}
	maySkip := false
	defer func() {
		s.mu.Lock()
		s.maySkip = maySkip
		s.mu.Unlock()
	}()
	sweep := func(jql string, awaiting bool) error {
		for range maxSweeps {
			fresh, pages := 0, 0
			err := s.search(ctx, jql, func(issues []jira.Issue) error {
				pages++
				for i := range issues {
					if seen[issues[i].ID] {
						continue
					}
					seen[issues[i].ID] = true
					fresh++
					t := s.ticket(&issues[i])
					if awaiting {
						t.AwaitingApproval = !t.Closed
					} else {
						t.Open = !t.Closed
						s.prefetchTransitions(ctx, t)
					}
					if err := fn(t); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil || pages <= 1 {
				return err // one page cannot have skipped anything
			}
			if fresh == 0 {
				// Nothing new, but issues closing meanwhile may have shifted
				// unseen ones past this sweep's pages.
				maySkip = true
				return nil
			}
		}
		maySkip = true
		return nil
	}
	if err := sweep(s.o.JQL, false); err != nil {
		return err
	}
	if s.o.AwaitingJQL != "" {
		return sweep(s.o.AwaitingJQL, true)
	}
	return nil
}

// search pages jql, calling fn with each page; fn's error ends the search.
func (s *Source) search(ctx context.Context, jql string, fn func([]jira.Issue) error) error {
	if s.deployment == Cloud {
		return s.searchCloud(ctx, jql, fn)
	}
	return s.searchDC(ctx, jql, fn)
}

// searchCloud pages the enhanced search (GET /rest/api/2/search/jql): the next
// page's token and IsLast come back on the *jira.Response.
func (s *Source) searchCloud(ctx context.Context, jql string, fn func([]jira.Issue) error) error {
	opts := &jira.SearchOptionsV2{MaxResults: s.o.PageSize, Fields: s.searchFields()}
	tokens := map[string]bool{}
	for {
		issues, resp, err := s.c.Issue.SearchV2JQLWithContext(ctx, jql, opts)
		if err != nil {
			err = s.apiErr(http.MethodGet, "/rest/api/2/search/jql", resp, err)
			if upstream.StatusOf(err) == http.StatusNotFound {
				return isync.Blocked("jira:config", "Jira has no /rest/api/2/search/jql: this looks like Jira Data Center; set jira.deployment: datacenter", err)
			}
			return s.classify(fmt.Errorf("searching Jira: %w", err))
		}
		if err := fn(issues); err != nil {
			return err
		}
		if resp.IsLast || resp.NextPageToken == "" {
			return nil
		}
		if tokens[resp.NextPageToken] {
			return fmt.Errorf("searching Jira: the search returned the same nextPageToken twice")
		}
		tokens[resp.NextPageToken] = true
		opts.NextPageToken = resp.NextPageToken
	}
}

// searchDC pages the legacy search (GET /rest/api/2/search) with startAt.
func (s *Source) searchDC(ctx context.Context, jql string, fn func([]jira.Issue) error) error {
	opts := &jira.SearchOptions{MaxResults: s.o.PageSize, Fields: s.searchFields()}
	for {
		issues, resp, err := s.c.Issue.SearchWithContext(ctx, jql, opts)
		if err != nil {
			err = s.apiErr(http.MethodGet, "/rest/api/2/search", resp, err)
			if upstream.StatusOf(err) == http.StatusGone {
				return isync.Blocked("jira:config", "Jira answered 410 Gone for /rest/api/2/search: this is Jira Cloud (CHANGE-2046); set jira.deployment: cloud", err)
			}
			return s.classify(fmt.Errorf("searching Jira: %w", err))
		}
		if err := fn(issues); err != nil {
			return err
		}
		if len(issues) == 0 || opts.StartAt+len(issues) >= resp.Total {
			return nil
		}
		opts.StartAt += len(issues)
	}
}

var (
	issueIDRe  = regexp.MustCompile(`^[0-9]{1,18}$`)
	issueKeyRe = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,254}-[0-9]{1,18}$`)
)

// Get implements isync.Source. The issue counts as open only if the
// configured JQL still matches it, which one bounded search tells.
func (s *Source) Get(ctx context.Context, id string) (isync.Ticket, error) {
	if !issueIDRe.MatchString(id) && !issueKeyRe.MatchString(id) {
		return isync.Ticket{}, fmt.Errorf("jira: %q is not an issue id or key", id)
	}
	if err := s.init(ctx); err != nil {
		return isync.Ticket{}, err
	}
	field := "issuekey"
	if issueIDRe.MatchString(id) {
		field = "id"
	}
	value := id // digits only
	if field == "issuekey" {
		value = quoteJQL(id)
	}
	jql := "(" + s.where + ") AND " + field + " = " + value
	var found []jira.Issue
	collect := func(issues []jira.Issue) error { found = append(found, issues...); return nil }
	if err := s.search(ctx, jql, collect); err != nil {
		return isync.Ticket{}, err
	}
	if len(found) > 0 {
		t := s.ticket(&found[0])
		t.Open = !t.Closed
		return t, nil
	}
	if s.o.AwaitingJQL != "" {
		where, _ := splitOrderBy(s.o.AwaitingJQL)
		if err := s.search(ctx, "("+where+") AND "+field+" = "+value, collect); err != nil {
			return isync.Ticket{}, err
		}
		if len(found) > 0 {
			t := s.ticket(&found[0])
			t.AwaitingApproval = !t.Closed
			return t, nil
		}
	}
	issue, resp, err := s.c.Issue.GetWithContext(ctx, id, &jira.GetQueryOptions{Fields: strings.Join(s.searchFields(), ",")})
	if err != nil {
		return isync.Ticket{}, s.classify(fmt.Errorf("reading Jira issue %s: %w", id, s.apiErr(http.MethodGet, "/rest/api/2/issue/"+id, resp, err)))
	}
	return s.ticket(issue), nil
}

// ticket maps an issue onto the engine's Ticket (Open is set by the caller,
// who knows whether the JQL matched).
func (s *Source) ticket(is *jira.Issue) isync.Ticket {
	t := isync.Ticket{Source: Name, ID: is.ID, Key: is.Key, Fields: map[string]string{}}
	f := is.Fields
	if f == nil {
		t.Invalid = "Jira returned the issue without its fields"
		return t
	}
	if f.Status != nil {
		t.Fields["status"] = f.Status.Name
		t.Closed = f.Status.StatusCategory.Key == "done"
		// Transitions depend on the workflow (project, issue type) and the
		// status: the key their cached list is kept under.
		t.Fields[workflowField] = f.Project.Key + "/" + f.Type.Name + "/" + f.Status.ID
	}
	if f.Reporter != nil {
		t.Requester = f.Reporter.DisplayName
		if t.Requester == "" {
			t.Requester = f.Reporter.Name
		}
	}
	t.Version = time.Time(f.Updated).UTC().Format(time.RFC3339)
	img, present := f.Unknowns[s.ids[s.o.ImageField]]
	t.Image = fieldText(img)
	if !present || strings.TrimSpace(t.Image) == "" {
		t.Invalid = fmt.Sprintf("the issue's %q field is empty; open a new request that names one image, for example python:latest-dev", s.o.ImageField)
	}
	if s.o.JustificationField != "" {
		t.Justification = fieldText(f.Unknowns[s.ids[s.o.JustificationField]])
	}
	for _, name := range s.o.ExtraFields {
		t.Fields[name] = fieldText(f.Unknowns[s.ids[name]])
	}
	return t
}

// fieldText reads a custom field value: text (string), select ({"value": …}),
// user ({"displayName": …}), multi-valued ([…], joined with ", "), number, or
// unset (null → "").
func fieldText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case map[string]any:
		for _, k := range []string{"value", "name", "displayName", "key"} {
			if s, ok := x[k].(string); ok {
				return s
			}
		}
		return ""
	case []any:
		var parts []string
		for _, e := range x {
			if s := fieldText(e); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ", ")
	default:
		return fmt.Sprint(x)
	}
}

// Check makes one authenticated read, for `validate --online` and readiness,
// once the deployment (and with it the credentials to send) is known.
func (s *Source) Check(ctx context.Context) error {
	if _, err := s.resolve(ctx); err != nil {
		return err
	}
	if err := s.doJSON(ctx, http.MethodGet, "rest/api/2/myself", nil, nil); err != nil {
		return s.refused(ctx, fmt.Errorf("jira: %w", err))
	}
	return s.init(ctx)
}
