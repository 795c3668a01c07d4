package kvclient

import (
	"fmt"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// Statuses returns one status per entry of a PutAll or DeleteAll call, in request order, from
// the entries sent and the response's results and revision. The server leaves results out when
// every key was applied at the response's revision (always so for a successful ATOMIC call,
// and for a BEST_EFFORT call applied whole at once): Statuses then gives each key code OK at
// that revision. Results of any other length than the entries' are an error.
func Statuses[E interface{ GetKey() string }](entries []E, results []*kv.KeyStatus, revision int64) ([]*kv.KeyStatus, error) {
	if len(results) == len(entries) {
		return results, nil
	}
	if len(results) != 0 {
		return nil, &Error{Code: kv.ErrorCode_INTERNAL,
			Message: fmt.Sprintf("the server answered %d results for %d entries", len(results), len(entries))}
	}
	backing := make([]kv.KeyStatus, len(entries))
	statuses := make([]*kv.KeyStatus, len(entries))
	for i, e := range entries {
		backing[i] = kv.KeyStatus{Key: e.GetKey(), Code: kv.ErrorCode_OK, Version: revision}
		statuses[i] = &backing[i]
	}
	return statuses, nil
}
