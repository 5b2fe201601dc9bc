package httpfake

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// extFault is a fake's own fault type with a field of its own.
type extFault struct {
	Fault
	Tag string
}

func newHandler(t *testing.T) (*Handler[extFault], *httptest.Server) {
	t.Helper()
	h := &Handler[extFault]{
		Serve: func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			WriteRaw(w, http.StatusOK, append([]byte(`"ok `), append(b, '"')...))
		},
		Clock:        func() time.Time { return time.Unix(1700000000, 0) },
		Base:         func(f extFault) Fault { return f.Fault },
		Wrap:         func(f Fault) extFault { return extFault{Fault: f} },
		HTMLPage:     func(http.Header, extFault, int) string { return "<html></html>" },
		FaultHeaders: func(h http.Header, f extFault, _ int) { h.Set("X-Tag", f.Tag) },
		ErrorBody:    func(status int) []byte { return []byte(`{"status":` + http.StatusText(status) + `}`) },
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func TestHandlerFaultQueueAndLog(t *testing.T) {
	h, srv := newHandler(t)
	h.InjectFault(extFault{Fault: Fault{Method: "POST", Status: 503, Times: 2}, Tag: "a"})
	h.InjectFault(extFault{Fault: Fault{PathContains: "/x", Body: `{"cut`}})
	h.InjectFault(extFault{Fault: Fault{PathContains: "/page", HTML: true}})

	send := func(method, path string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("body"))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Tag"), string(b)
	}
	for i, want := range []struct {
		method, path string
		status       int
		tag, body    string
	}{
		{"GET", "/x", 200, "", `{"cut`},
		{"GET", "/x", 200, "", `"ok body"`},
		{"POST", "/y", 503, "a", `{"status":Service Unavailable}`},
		{"POST", "/y", 503, "a", `{"status":Service Unavailable}`},
		{"POST", "/y", 200, "", `"ok body"`},
		{"GET", "/page", 200, "", "<html></html>"},
	} {
		status, tag, body := send(want.method, want.path)
		if status != want.status || tag != want.tag || body != want.body {
			t.Errorf("request %d: got %d %q %q, want %d %q %q", i, status, tag, body, want.status, want.tag, want.body)
		}
	}

	reqs := h.Requests()
	if len(reqs) != 6 {
		t.Fatalf("logged %d requests, want 6", len(reqs))
	}
	if r := reqs[2]; r.Method != "POST" || r.Path != "/y" || r.Status != 503 || r.Body != "body" || !r.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("logged %+v", r)
	}
	h.ResetRequests()
	if n := len(h.Requests()); n != 0 {
		t.Errorf("%d requests after ResetRequests", n)
	}
}

func TestHandlerFaultRateRepeatable(t *testing.T) {
	draw := func() []Fault {
		h := &Handler[Fault]{TruncatedBody: "{"}
		h.SetFaultRate(1, 7)
		r := httptest.NewRequest("POST", "/", nil)
		var out []Fault
		for range 50 {
			f, ok := h.takeFaultLocked(r)
			if !ok {
				t.Fatal("no fault at rate 1")
			}
			out = append(out, f)
		}
		return out
	}
	a, b := draw(), draw()
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("draw %d differs: %+v vs %+v", i, a[i], b[i])
		}
		if a[i].Body != "" && !a[i].ApplyFirst {
			t.Errorf("draw %d: a truncated answer to a write must be applied first", i)
		}
	}
}
