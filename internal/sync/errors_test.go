package sync_test

import (
	"errors"
	"testing"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// An error whose reason is its wrapped error's text says it once.
func TestErrorSaysItsReasonOnce(t *testing.T) {
	t.Parallel()
	inner := errors.New(`jira: no field named "Imag name"`)
	cases := []struct {
		err  error
		want string
	}{
		{isync.Blocked("jira:config", inner.Error(), inner), `jira: no field named "Imag name"`},
		{isync.Blocked("c", "fix the config", inner), `fix the config: jira: no field named "Imag name"`},
		{isync.Rejectedf("unknown image"), "unknown image"},
		{isync.Retryable(inner), inner.Error()},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
		if !errors.Is(c.err, inner) && c.err.Error() != "unknown image" {
			t.Errorf("%q does not wrap its cause", c.err)
		}
	}
}
