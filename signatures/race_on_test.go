//go:build race

package signatures

// raceBuild: the race detector's instrumentation allocates, so counts of
// allocations mean nothing under it.
const raceBuild = true
