//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

var errLocked = errors.New("locked by another process")

// lockFile: this system has no flock; the store cannot be owned safely.
func lockFile(*os.File) error {
	return fmt.Errorf("%w: the store's lock needs flock, which %s lacks", errors.ErrUnsupported, runtime.GOOS)
}
