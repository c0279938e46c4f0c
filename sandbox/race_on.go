//go:build race

package sandbox

// raceBuild: the race runtime sleeps a second at every exit unless told
// not to, which would add a second to every sandboxed start in -race tests.
const raceBuild = true
