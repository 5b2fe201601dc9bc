package app

import (
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/server"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Webhooks returns one webhook endpoint per registered source that takes
// webhooks, in registry order: configured for an enabled source with a
// secret, else answering 404.
func Webhooks(cfg *config.Config) []server.Webhook {
	var out []server.Webhook
	for _, sc := range cfg.Sources() {
		wh, ok := sc.Connector.(source.Webhooker)
		if !ok {
			continue
		}
		w := server.Webhook{Name: sc.Name()}
		if sc.Enabled() {
			w.Hook = wh.Webhook(sc.Section)
		}
		out = append(out, w)
	}
	return out
}

// EnabledNames returns the names of the enabled sources, in registry order:
// the sources the metrics create series for.
func EnabledNames(cfg *config.Config) []string {
	var out []string
	for _, sc := range cfg.EnabledSources() {
		out = append(out, sc.Name())
	}
	return out
}
