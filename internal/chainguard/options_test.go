package chainguard

import (
	"context"
	"fmt"
	"strings"
	"testing"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
)

func validOptions() Options {
	return Options{
		APIURL:  "https://console-api.enforce.dev",
		OrgID:   strings.Repeat("0a", 20),
		OrgName: "example.com",
		Token:   "s3cr3t-token",
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := validOptions().Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, tc := range []struct {
		name string
		mut  func(*Options)
		want string
	}{
		{"empty url", func(o *Options) { o.APIURL = "" }, "api_url is empty"},
		{"no scheme", func(o *Options) { o.APIURL = "localhost:1234" }, "must be a URL"},
		{"host port", func(o *Options) { o.APIURL = "127.0.0.1:1234" }, "must be a URL"},
		{"plain http", func(o *Options) { o.APIURL = "http://console-api.enforce.dev" }, "loopback"},
		{"credentials", func(o *Options) { o.APIURL = "https://user:pw@console-api.enforce.dev" }, "credentials"},
		{"ftp", func(o *Options) { o.APIURL = "ftp://x" }, "https://"},
		{"org id", func(o *Options) { o.OrgID = "example.com" }, "40 lower-case hex"},
		{"org name", func(o *Options) { o.OrgName = "" }, "org_name"},
		{"org name path", func(o *Options) { o.OrgName = "a/b" }, "org_name"},
		{"org name case", func(o *Options) { o.OrgName = "Example" }, "org_name"},
		{"token", func(o *Options) { o.Token = " " }, "token is empty"},
		{"mode", func(o *Options) { o.Mode = "magic" }, "provision mode"},
		{"registry", func(o *Options) { o.Registry = "cgr.dev/x" }, "registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.mut(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "pw@") {
				t.Fatalf("error leaks a secret: %v", err)
			}
			if _, err := New(context.Background(), o); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	loop := validOptions()
	loop.APIURL = "http://127.0.0.1:8080"
	if err := loop.Validate(); err != nil {
		t.Fatalf("loopback http: %v", err)
	}
}

func TestOptionsNeverPrintToken(t *testing.T) {
	o := validOptions()
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%v %+v %#v %s", o, o, o, o)} {
		if strings.Contains(s, o.Token) {
			t.Fatalf("printed options leak the token: %s", s)
		}
	}
}

// The SDK registers its gRPC client metrics on the default Prometheus
// registry once per process: creating several clients must not panic.
func TestNewSeveralClients(t *testing.T) {
	for i := 0; i < 3; i++ {
		p, err := New(context.Background(), validOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := registry.NewClients(context.Background(), "http://127.0.0.1:1", "x")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
}
