package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
)

// A key's state lives in one Redis hash at dataKey(key): field "v" its value, field "n" its
// version; its expiry is the hash's own (PEXPIREAT), so Redis drops it when it expires. Each
// slot's revision counter is a string at revisionKey(slot). Both scripts touch only keys of
// one slot, KEYS[1] being that slot's counter; Lua numbers are doubles, so versions are exact
// up to 2^53.

// applyScript applies one slot's writes. ARGV[1] is "a" (atomic: all or none) or "b" (best
// effort: each write whose precondition holds); then per write, four arguments: "p" (put) or
// "d" (delete), the expected version (-1 any, 0 absent, n), the expiry in Unix ms (0 never)
// and the value. It checks every precondition first, exactly as store.Memory does, then, when
// something applies, draws the slot's next revision and writes. It returns the revision (0
// when nothing applied), then per write its code (store.Code) and the key's version before
// the call.
const applyScript = `
local n = #KEYS - 1
local atomic = ARGV[1] == 'a'
local codes, versions, ok = {}, {}, 0
for i = 1, n do
  local a = 2 + (i - 1) * 4
  local del = ARGV[a] == 'd'
  local expect = tonumber(ARGV[a + 1])
  local version = tonumber(redis.call('HGET', KEYS[i + 1], 'n') or '0')
  local code = 0
  if expect == 0 and version ~= 0 then code = 3
  elseif expect > 0 and expect ~= version then code = 2
  elseif del and version == 0 then code = 1 end
  codes[i], versions[i] = code, version
  if code == 0 then ok = ok + 1 end
end
local rev = 0
if ok > 0 and (ok == n or not atomic) then
  rev = redis.call('INCR', KEYS[1])
  for i = 1, n do
    if codes[i] == 0 then
      local a = 2 + (i - 1) * 4
      local k = KEYS[i + 1]
      if ARGV[a] == 'd' then
        redis.call('DEL', k)
      else
        redis.call('HSET', k, 'v', ARGV[a + 3], 'n', rev)
        local at = tonumber(ARGV[a + 2])
        if at > 0 then redis.call('PEXPIREAT', k, at) else redis.call('PERSIST', k) end
      end
    end
  end
end
local out = {rev}
for i = 1, n do
  out[#out + 1] = codes[i]
  out[#out + 1] = versions[i]
end
return out
`

// getScript reads one slot's keys as of the slot's revision. It returns the revision, then per
// key its value (nil when absent or expired), version and expiry in Unix ms (-1 never).
const getScript = `
local out = {tonumber(redis.call('GET', KEYS[1]) or '0')}
for i = 2, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'v', 'n')
  if f[2] then
    out[#out + 1] = f[1]
    out[#out + 1] = tonumber(f[2])
    out[#out + 1] = redis.call('PEXPIRETIME', KEYS[i])
  else
    out[#out + 1] = false
    out[#out + 1] = 0
    out[#out + 1] = -1
  end
end
return out
`

// script is a Lua script and its SHA-1, by which EVALSHA names it.
type script struct{ body, sha string }

func newScript(body string) script {
	sum := sha1.Sum([]byte(body))
	return script{body: body, sha: hex.EncodeToString(sum[:])}
}

var (
	applyLua = newScript(applyScript)
	getLua   = newScript(getScript)
)
