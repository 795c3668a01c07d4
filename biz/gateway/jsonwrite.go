package gateway

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/putallkv/putallkv/kitex_gen/kv"
)

// The hot responses (putAll, deleteAll, getAll) are appended straight into the response's
// pooled buffer, byte for byte what json.Marshal writes for the same value
// (TestResponseEncoding compares the two), without reflection or an intermediate copy.

// writeAppended answers status with the application/json body that appendBody appends.
func writeAppended[T any](c *app.RequestContext, status int, v *T, appendBody func([]byte, *T) []byte) {
	c.SetStatusCode(status)
	c.Response.Header.SetContentType("application/json")
	bb := c.Response.BodyBuffer()
	bb.B = appendBody(bb.B, v)
}

// appendBatchResult appends res as json.Marshal writes it.
func appendBatchResult(dst []byte, res *batchResult) []byte {
	dst = append(dst, `{"revision":`...)
	dst = strconv.AppendInt(dst, res.Revision, 10)
	dst = append(dst, `,"applied":`...)
	dst = strconv.AppendInt(dst, int64(res.Applied), 10)
	dst = append(dst, `,"replayed":`...)
	dst = strconv.AppendBool(dst, res.Replayed)
	dst = append(dst, `,"suggested_batch":`...)
	dst = strconv.AppendInt(dst, int64(res.SuggestedBatch), 10)
	if res.RetryAfterMs != 0 {
		dst = append(dst, `,"retry_after_ms":`...)
		dst = strconv.AppendInt(dst, res.RetryAfterMs, 10)
	}
	dst = append(dst, `,"results":`...)
	if res.Results == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, s := range res.Results {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"key":`...)
			dst = appendJSONString(dst, s.Key)
			dst = append(dst, `,"code":`...)
			dst = appendJSONString(dst, s.Code)
			dst = append(dst, `,"version":`...)
			dst = strconv.AppendInt(dst, s.Version, 10)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendGetAll appends the getAll answer (getAllResult) of the service's resp as json.Marshal
// writes it, straight from the API's items: value_base64 for every found key, value too when
// its bytes are UTF-8, expires_at_ms unless zero.
func appendGetAll(dst []byte, resp *kv.GetAllResponse) []byte {
	dst = append(dst, `{"revision":`...)
	dst = strconv.AppendInt(dst, resp.GetRevision(), 10)
	dst = append(dst, `,"items":[`...)
	for i, it := range resp.GetItems() {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendItem(dst, it, true)
	}
	return append(dst, "]}"...)
}

// appendItem appends one item of getAll or scan (item): its value only when withValue.
func appendItem(dst []byte, it *kv.Item, withValue bool) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, it.GetKey())
	dst = append(dst, `,"found":`...)
	found := it.GetFound()
	dst = strconv.AppendBool(dst, found)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, it.GetVersion(), 10)
	if found && withValue {
		v := it.GetValue()
		if utf8.Valid(v) {
			dst = append(dst, `,"value":`...)
			dst = appendJSONString(dst, v)
		}
		dst = append(dst, `,"value_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, v) // its alphabet needs no escaping
		dst = append(dst, '"')
	}
	if ms := it.GetExpiresAtMs(); ms != 0 {
		dst = append(dst, `,"expires_at_ms":`...)
		dst = strconv.AppendInt(dst, ms, 10)
	}
	return append(dst, '}')
}

// hexDigits are the digits of \u escapes.
const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json writes it: '<', '>'
// and '&' escaped for HTML, U+2028 and U+2029 escaped, bytes that are not UTF-8 as U+FFFD.
func appendJSONString[S []byte | string](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		r, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
