package app

import (
	"regexp"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "v1.2.3"
	if got := BuildVersion(); got != "v1.2.3" {
		t.Fatalf("with Version set at build time: %q", got)
	}
	// Left at "dev": what the toolchain recorded (a test binary records no
	// module version, and a VCS revision only when built with -buildvcs).
	Version = "dev"
	if got := BuildVersion(); !regexp.MustCompile(`^(dev(-[0-9a-f]{1,12}(-dirty)?)?|v\S+)$`).MatchString(got) {
		t.Fatalf("BuildVersion() = %q", got)
	}
}
