package gateway

import "io"

// bodyChunk is the most readUpTo sets aside for a body before its bytes arrive: about what
// Hertz reads together with the headers, so a declared length alone never costs more.
const bodyChunk = 8 << 10

// readUpTo reads r to its end or to limit bytes, whichever comes first; declared is the
// body's Content-Length (negative when unknown, as for a chunked body), which r never
// exceeds. A body of up to bodyChunk bytes takes one allocation of its size; a longer one
// grows as its bytes arrive, to at most twice what has arrived, never on the strength of its
// declared length, and ends in a buffer of exactly that length. The result is never nil.
func readUpTo(r io.Reader, declared, limit int) ([]byte, error) {
	size := min(bodyChunk, limit)
	if declared >= 0 {
		size = min(size, declared)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) == declared || len(buf) >= limit {
				return buf, nil
			}
			grown := min(2*cap(buf), limit)
			if declared >= 0 {
				grown = min(grown, declared)
			}
			buf = append(make([]byte, 0, grown), buf...) // slices.Grow would round up past both bounds
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
}
