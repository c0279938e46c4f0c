package store

import (
	"encoding/json"
	"fmt"
)

// getJSON reads key from b and decodes it as a T: false when there is no
// such key, and an error naming what (e.g. `server "github"`) when the
// stored bytes do not decode. The one get-and-decode of the store.
func getJSON[T any](b kvBucket, key []byte, what string) (T, bool, error) {
	var v T
	raw := b.Get(key)
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		var zero T
		return zero, false, fmt.Errorf("decode %s: %w", what, err)
	}
	return v, true, nil
}
