//go:build !race

package signatures

const raceBuild = false
