package sync

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// BridgeName names the bridge in every note's marker line.
const BridgeName = "image-request-bridge"

// Marker is the stable first line of every note the bridge writes on a ticket:
// it names the bridge, the ticket and the request id, so a source can tell a
// note it already wrote from any other.
func Marker(key, requestID string) string {
	return fmt.Sprintf("[%s] %s request %s", BridgeName, key, requestID)
}

// noteContext is what every note says about who decided and when.
type noteContext struct {
	instance string
	version  string
	now      time.Time
}

func (nc noteContext) footer() []Field {
	return []Field{
		{"Decided by", fmt.Sprintf("%s %s (instance %s)", BridgeName, nc.version, nc.instance)},
		{"Time", nc.now.UTC().Format(time.RFC3339)},
	}
}

func requestFields(t Ticket) []Field {
	img := t.Image
	if strings.TrimSpace(img) == "" {
		img = "(none)"
	}
	f := []Field{{"Requested image", img}}
	if t.Requester != "" {
		f = append(f, Field{"Requested for", t.Requester})
	}
	if t.Approver != "" {
		f = append(f, Field{"Approved by", t.Approver})
	}
	if tier := t.Fields[policyField]; tier != "" {
		f = append(f, Field{"Approval tier", tier})
	}
	// The extra request fields the source was configured to read (team,
	// environment, …), in a stable order.
	var extra []string
	for k, v := range t.Fields {
		if k != policyField && k != "state" && k != "status" && !strings.HasPrefix(k, "_") && strings.TrimSpace(v) != "" {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		f = append(f, Field{strings.ToUpper(k[:1]) + k[1:], t.Fields[k]})
	}
	if t.Justification != "" {
		f = append(f, Field{"Justification", t.Justification})
	}
	return f
}

// provisionedReport is the result note of a provisioned (or already present) image.
func provisionedReport(rec Record, t Ticket, nc noteContext) Report {
	res := rec.Result
	status := "Provisioned: the image was added to the organization's registry."
	if res.AlreadyPresent {
		status = "Already present: the image was already in the organization's registry; nothing was changed."
	}
	repo := res.RepoID
	if repo == "" {
		repo = "pending (the registry is still creating the repository)"
	}
	f := []Field{
		{"Result", status},
		{"Pull reference", res.PullRef},
		{"Chainguard repository id", repo},
		{"Method", res.Method},
	}
	if len(rec.Images) > 1 {
		n := 0
		for _, o := range rec.Images {
			if o.Provisioned() {
				n++
			}
		}
		status = fmt.Sprintf("Provisioned %d of %d images.", n, len(rec.Images))
		if n < len(rec.Images) {
			status += fmt.Sprintf(" %d could not be provisioned; see below.", len(rec.Images)-n)
		}
		f = append([]Field{{"Result", status}}, imageFields(rec.Images)...)
	}
	f = append(f, requestFields(t)...)
	f = append(f, nc.footer()...)
	summary := fmt.Sprintf("Provisioned %s (Chainguard repository %s).", res.PullRef, repo)
	if len(rec.Images) > 1 {
		summary = status
	} else if res.AlreadyPresent {
		summary = fmt.Sprintf("Already present: %s (Chainguard repository %s).", res.PullRef, repo)
	}
	return Report{Outcome: OutcomeProvisioned, Marker: Marker(t.Key, rec.RequestID), Summary: summary, Fields: f}
}

// rejectedReport is the result note of a request the bridge cannot serve.
func rejectedReport(rec Record, t Ticket, nc noteContext) Report {
	f := []Field{
		{"Result", "Rejected: the image was not provisioned."},
		{"Reason", rec.Reason},
		{"What to do", "Open a new request with a corrected image reference, for example python or python:latest-dev."},
	}
	f = append(f, requestFields(t)...)
	f = append(f, nc.footer()...)
	return Report{Outcome: OutcomeRejected, Marker: Marker(t.Key, rec.RequestID), Summary: "Not provisioned: " + rec.Reason, Fields: f}
}

// blockedReport is the one note written for a blocking cause; the ticket stays open.
func blockedReport(rec Record, t Ticket, nc noteContext) Report {
	f := []Field{
		{"Result", "Blocked: the bridge cannot provision this image yet. The request stays open and is retried automatically; this ticket is updated once it is done."},
		{"Cause", rec.BlockedCause},
		{"Detail", rec.LastError},
		{"What to do", "A bridge administrator must fix the cause above; the requester needs to do nothing."},
	}
	f = append(f, requestFields(t)...)
	f = append(f, nc.footer()...)
	return Report{Outcome: OutcomeBlocked, Marker: Marker(t.Key, rec.RequestID), Summary: "Blocked: " + rec.BlockedCause, Fields: f}
}

// syncingReport is the first of two notes with close_on: ready.
func syncingReport(rec Record, t Ticket, nc noteContext, wait time.Duration) Report {
	f := []Field{
		{"Result", "Provisioned, syncing: the repository exists; the image is still being synced into your registry. This ticket is closed with a second note once it can be pulled."},
		{"Pull reference", rec.Result.PullRef},
		{"Chainguard repository id", rec.Result.RepoID},
		{"Waiting at most", wait.String()},
	}
	f = append(f, requestFields(t)...)
	f = append(f, nc.footer()...)
	return Report{Outcome: OutcomeSyncing, Marker: Marker(t.Key, rec.RequestID), Summary: "Syncing " + rec.Result.PullRef, Fields: f}
}
