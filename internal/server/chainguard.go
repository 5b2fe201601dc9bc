package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"chainguard.dev/sdk/events"
	"chainguard.dev/sdk/events/receiver"
	"chainguard.dev/sdk/events/registry"
	registryv1 "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/uidp"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Tag event types; the SDK's events/registry names only the repo and push ones.
const (
	TagCreatedEventType = "dev.chainguard.api.platform.registry.tag.created.v1"
	TagUpdatedEventType = "dev.chainguard.api.platform.registry.tag.updated.v1"
)

const (
	cgInitTimeout = 10 * time.Second
	cgRetryEvery  = 10 * time.Second // least time between two issuer look-ups
)

// cgReceiver builds the SDK's verifying handler, which looks up the issuer's
// OIDC configuration, and retries that look-up lazily when it failed.
type cgReceiver struct {
	base          context.Context
	issuer, group string
	fn            receiver.Handler
	log           zerolog.Logger

	mu      sync.Mutex
	h       http.Handler
	lastTry time.Time
	lastErr error
}

func newCGReceiver(ctx context.Context, issuer, group string, fn receiver.Handler, log zerolog.Logger) *cgReceiver {
	c := &cgReceiver{base: context.WithoutCancel(ctx), issuer: issuer, group: group, fn: fn, log: log}
	if _, err := c.get(); err != nil {
		log.Warn().Err(err).Str("issuer", issuer).Msg("cannot reach the Chainguard issuer yet; CloudEvents are answered 503 until it can be reached")
	}
	return c
}

// get returns the verifying handler, building it if needed.
func (c *cgReceiver) get() (http.Handler, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h != nil {
		return c.h, nil
	}
	if !c.lastTry.IsZero() && time.Since(c.lastTry) < cgRetryEvery {
		return nil, c.lastErr
	}
	c.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(c.base, cgInitTimeout)
	defer cancel()
	h, err := receiver.NewHTTPHandler(ctx, c.issuer, c.group, c.fn)
	if err != nil {
		c.lastErr = fmt.Errorf("chainguard issuer %s: %w", c.issuer, err)
		return nil, c.lastErr
	}
	c.h = h
	return h, nil
}

// cgDelivery carries what onEvent learnt back to the HTTP handler for its log
// line and metric.
type cgDelivery struct {
	result  string
	id      string // ce-id, when well-formed
	ceType  string
	repoID  string
	repo    string
	tag     string
	problem string
}

func (d *cgDelivery) detail() map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{"type": d.ceType, "repo": d.repo, "tag": d.tag, "problem": d.problem} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

type cgDeliveryKey struct{}

var (
	ceTypeRe   = regexp.MustCompile(`^[a-z0-9.]{1,128}$`)
	repoNameRe = regexp.MustCompile(`^[a-z0-9]+([._/-]+[a-z0-9]+)*$`)
	tagRe      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// onEvent runs for every delivery whose token the SDK verified.
func (s *Server) onEvent(ctx context.Context, ev cloudevents.Event) error {
	st, _ := ctx.Value(cgDeliveryKey{}).(*cgDelivery)
	if st == nil {
		st = &cgDelivery{}
	}
	st.ceType = wellFormed(ceTypeRe, ev.Type())
	st.id = source.LogSafe(ev.ID())

	re, ok, err := repoEventOf(ev)
	if err != nil {
		st.result, st.problem = metrics.ResultBadRequest, err.Error()
		return cloudevents.NewHTTPResult(http.StatusBadRequest, "%s", err.Error())
	}
	if !ok {
		st.result = metrics.ResultIgnored
		return nil
	}
	st.repoID, st.repo, st.tag = re.RepoID, re.Repo, re.Tag
	if re.RepoID != "" && !uidp.IsAncestor(s.cg.group, re.RepoID) {
		st.result, st.problem = metrics.ResultIgnored, "repo is outside the organization"
		return nil
	}
	if !s.cgSeen.add(ev.Source() + "\x00" + ev.ID()) {
		st.result = metrics.ResultDuplicate
		return nil
	}
	s.o.Engine.RepoEvent(ctx, re)
	st.result = metrics.ResultAccepted
	return nil
}

// repoEventOf maps a CloudEvent to a RepoEvent. ok is false for event types
// the bridge does not act on.
func repoEventOf(ev cloudevents.Event) (re isync.RepoEvent, ok bool, err error) {
	re.Type = ev.Type()
	switch ev.Type() {
	case registry.RepoCreatedEventType, registry.RepoUpdatedEventType:
		var repo registryv1.Repo
		if err := decodeProtoBody(ev, &repo); err != nil {
			return re, false, err
		}
		re.RepoID = firstOf(ev.Subject(), repo.GetId())
		re.Repo = repo.GetName()
	case TagCreatedEventType, TagUpdatedEventType:
		var tag registryv1.Tag
		if err := decodeProtoBody(ev, &tag); err != nil {
			return re, false, err
		}
		if tagID := firstOf(ev.Subject(), tag.GetId()); strings.Contains(tagID, "/") {
			re.RepoID = uidp.Parent(tagID)
		}
		re.Tag = tag.GetName()
	case registry.PushedEventType:
		var push pushBody
		if err := decodeJSONBody(ev, &push); err != nil {
			return re, false, err
		}
		if push.Error != nil || strings.EqualFold(push.Type, "blob") {
			return re, false, nil // a failed push, or a layer: nothing to pull yet
		}
		re.RepoID = push.RepoID
		re.Repo = push.DisplayName
		if re.Repo == "" && push.Repository != "" && !isUIDP(push.Repository) {
			re.Repo = path.Base(push.Repository)
		}
		re.Tag = push.Tag
	default:
		return re, false, nil
	}
	if re.RepoID != "" && !isUIDP(re.RepoID) {
		return re, false, errors.New("repo id is not a UIDP")
	}
	if re.Repo != "" && (len(re.Repo) > 256 || !repoNameRe.MatchString(re.Repo)) {
		return re, false, errors.New("repo name is not well-formed")
	}
	if re.Tag != "" && !tagRe.MatchString(re.Tag) {
		return re, false, errors.New("tag is not well-formed")
	}
	if re.RepoID == "" && re.Repo == "" {
		return re, false, errors.New("event names no repo")
	}
	return re, true, nil
}

// pushBody is the SDK's PushEvent with its timestamp kept raw: the bridge does
// not use it, and a format the SDK's civil.DateTime does not parse must not
// lose the event.
type pushBody struct {
	registry.PushEvent
	When json.RawMessage `json:"when"`
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// occurrenceBody returns the "body" of the event's events.Occurrence envelope,
// or the whole data when there is no envelope.
func occurrenceBody(ev cloudevents.Event) ([]byte, error) {
	var body json.RawMessage
	occ := events.Occurrence{Body: &body}
	if err := json.Unmarshal(ev.Data(), &occ); err != nil {
		return nil, errors.New("event data is not a JSON object")
	}
	if len(body) == 0 || string(body) == "null" {
		return ev.Data(), nil
	}
	return body, nil
}

// decodeProtoBody decodes a platform API resource, ignoring fields newer than
// this SDK.
func decodeProtoBody(ev cloudevents.Event, msg proto.Message) error {
	body, err := occurrenceBody(ev)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, msg); err != nil {
		return errors.New("event body is not the expected resource")
	}
	return nil
}

func decodeJSONBody(ev cloudevents.Event, v any) error {
	body, err := occurrenceBody(ev)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errors.New("event body is not the expected JSON object")
	}
	return nil
}
