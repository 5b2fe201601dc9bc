package jira

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultMaxResults is the page size of both searches when maxResults is
	// not given.
	defaultMaxResults = 50
	// maxResultsCloud caps the enhanced search's page size (Cloud serves at
	// most 100 issues a page when fields are requested).
	maxResultsCloud = 100
	// maxResultsDC caps the legacy search's page size
	// (jira.search.views.default.max).
	maxResultsDC = 1000
	// searchCommentCap is how many comments a search result carries per issue.
	searchCommentCap = 20
	// pageTokenTTL is how long a nextPageToken stays valid.
	pageTokenTTL = 7 * 24 * time.Hour
)

// InvalidPageTokenBody is the 400 of an enhanced search with a nextPageToken
// that is garbled, expired (older than 7 days) or issued for another query.
var InvalidPageTokenBody = errorJSON([]string{"The provided next page token is invalid or expired."}, nil)

// searchParams are the parameters of either search, from the query string
// (GET) or the JSON body (POST).
type searchParams struct {
	JQL           string   `json:"jql"`
	NextPageToken string   `json:"nextPageToken"`
	StartAt       *int     `json:"startAt"`
	MaxResults    *int     `json:"maxResults"`
	Fields        []string `json:"fields"`
	Expand        any      `json:"expand"` // a string on Cloud, a list on Data Center
	Properties    []string `json:"properties"`
}

// readSearchParams reads the parameters; it answers 400 itself on failure.
func readSearchParams(w http.ResponseWriter, r *http.Request) (searchParams, []string, bool) {
	var p searchParams
	if r.Method == http.MethodPost {
		if !readJSON(w, r, &p) {
			return p, nil, false
		}
	} else {
		q := r.URL.Query()
		p.JQL = q.Get("jql")
		p.NextPageToken = q.Get("nextPageToken")
		p.Fields = q["fields"]
		p.Expand = strings.Join(q["expand"], ",")
		p.Properties = q["properties"]
		for name, dst := range map[string]**int{"startAt": &p.StartAt, "maxResults": &p.MaxResults} {
			if v := q.Get(name); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					writeError(w, http.StatusBadRequest, []string{fmt.Sprintf("The value '%s' is invalid for the parameter '%s'.", v, name)}, nil)
					return p, nil, false
				}
				*dst = &n
			}
		}
	}
	var expand []string
	switch e := p.Expand.(type) {
	case string:
		expand = splitList([]string{e})
	case []any:
		for _, x := range e {
			if s, ok := x.(string); ok {
				expand = append(expand, s)
			}
		}
	}
	return p, expand, true
}

// pageSize applies the default and the cap to maxResults.
func pageSize(v *int, limit int) (int, error) {
	if v == nil {
		return defaultMaxResults, nil
	}
	if *v < 0 {
		return 0, errors.New("maxResults must not be negative")
	}
	return min(*v, limit), nil
}

// pageToken is the state behind an opaque nextPageToken: the offset of the
// next page, a hash of the query and the issue time.
type pageToken struct {
	Offset int    `json:"o"`
	Query  uint32 `json:"q"`
	Issued int64  `json:"t"`
}

func queryHash(jql string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(jql))
	return h.Sum32()
}

func encodePageToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, bool) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &t) != nil || t.Offset <= 0 {
		return pageToken{}, false
	}
	return t, true
}

// serveSearchJQL answers the enhanced search, GET|POST /search/jql (Cloud
// only; Data Center answers the Jersey 404). Issues carry only their id
// unless fields are requested; pages are chained by an opaque nextPageToken
// that is absent on the last page (isLast true); there is no total.
func (s *Server) serveSearchJQL(w http.ResponseWriter, r *http.Request) {
	if !s.cloud() {
		s.writeNotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeMethodNotAllowed(w, http.MethodGet, http.MethodPost)
		return
	}
	p, expand, ok := readSearchParams(w, r)
	if !ok {
		return
	}
	size, err := pageSize(p.MaxResults, maxResultsCloud)
	if err != nil {
		writeError(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return
	}
	if size == 0 {
		size = defaultMaxResults
	}
	now := s.clock()
	offset := 0
	if p.NextPageToken != "" {
		t, ok := decodePageToken(p.NextPageToken)
		if !ok || t.Query != queryHash(p.JQL) || now.Sub(time.UnixMilli(t.Issued)) > pageTokenTTL {
			writeRaw(w, http.StatusBadRequest, []byte(InvalidPageTokenBody))
			return
		}
		offset = t.Offset
	}
	sel := parseFieldSelection(p.Fields, "id")
	opts := expandOptions(expand)
	opts.properties = splitList(p.Properties)
	opts.commentCap = searchCommentCap

	s.mu.Lock()
	found, bounded, err := s.searchLocked(p.JQL)
	if err == nil && !bounded {
		s.mu.Unlock()
		writeRaw(w, http.StatusBadRequest, []byte(UnboundedJQLBody))
		return
	}
	if err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return
	}
	end := min(offset+size, len(found))
	issues := []object{}
	names := object{}
	for _, rec := range found[min(offset, len(found)):end] {
		o := s.issueJSONLocked(rec, sel, opts)
		if n, ok := o.get("names"); ok {
			names = mergeNames(names, n.(object))
			o = without(o, "names")
		}
		issues = append(issues, o)
	}
	s.mu.Unlock()

	body := object{{"issues", issues}}
	if end < len(found) {
		body = append(body, member{"nextPageToken", encodePageToken(pageToken{Offset: end, Query: queryHash(p.JQL), Issued: now.UnixMilli()})})
	}
	body = append(body, member{"isLast", end >= len(found)})
	if opts.names {
		body = append(body, member{"names", names})
	}
	writeJSON(w, http.StatusOK, body)
}

// serveLegacySearch answers GET|POST /search: 410 Gone on Cloud
// (CHANGE-2046); on Data Center the startAt/maxResults/total search, with
// *navigable fields by default. Data Center runs unbounded JQL; maxResults=0
// answers only the total.
func (s *Server) serveLegacySearch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeMethodNotAllowed(w, http.MethodGet, http.MethodPost)
		return
	}
	if s.cloud() {
		writeRaw(w, http.StatusGone, []byte(SearchRemovedBody))
		return
	}
	p, expand, ok := readSearchParams(w, r)
	if !ok {
		return
	}
	size, err := pageSize(p.MaxResults, maxResultsDC)
	startAt := 0
	if p.StartAt != nil {
		startAt = *p.StartAt
	}
	if err != nil || startAt < 0 {
		writeError(w, http.StatusBadRequest, []string{"The paging parameters are invalid."}, nil)
		return
	}
	sel := parseFieldSelection(p.Fields, "*navigable")
	sel.idOnly = false
	opts := expandOptions(expand)
	opts.properties = splitList(p.Properties)

	s.mu.Lock()
	found, _, err := s.searchLocked(p.JQL)
	if err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return
	}
	issues := []object{}
	names := object{}
	for i := startAt; i < len(found) && len(issues) < size; i++ {
		o := s.issueJSONLocked(found[i], sel, opts)
		if n, ok := o.get("names"); ok {
			names = mergeNames(names, n.(object))
			o = without(o, "names")
		}
		issues = append(issues, o)
	}
	s.mu.Unlock()

	body := object{
		{"expand", "schema,names"},
		{"startAt", startAt},
		{"maxResults", size},
		{"total", len(found)},
		{"issues", issues},
	}
	if opts.names {
		body = append(body, member{"names", names})
	}
	writeJSON(w, http.StatusOK, body)
}

// mergeNames adds the entries of add missing from names.
func mergeNames(names, add object) object {
	for _, m := range add {
		if _, ok := names.get(m.key); !ok {
			names = append(names, m)
		}
	}
	return names
}

// without returns o without key.
func without(o object, key string) object {
	out := make(object, 0, len(o))
	for _, m := range o {
		if m.key != key {
			out = append(out, m)
		}
	}
	return out
}
