package gateway

import "sync"

// inFlight is the set of Idempotency-Keys whose requests this gateway is serving now. The
// service alone would make a duplicate that arrives mid-call wait for the first and replay it;
// the IETF Idempotency-Key draft asks for 409 instead, so the caller learns at once that its
// retry raced the original. The set is per gateway process: a duplicate sent through another
// gateway replica still waits in the service and replays.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// acquire marks key in flight. ok is false if it already is; otherwise release must be called
// when the request is done.
func (f *inFlight) acquire(key string) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.keys[key]; busy {
		return nil, false
	}
	f.keys[key] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.keys, key)
		f.mu.Unlock()
	}, true
}
