package bench

// getg returns the address of the current goroutine's runtime descriptor.
func getg() uintptr

// goid identifies the current goroutine cheaply: by its descriptor's
// address, which is unique among live goroutines (the engine's worker
// goroutines live for the whole pass).
func goid() int64 { return int64(getg()) }
