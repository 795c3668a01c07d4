package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
)

// A key's state lives in one Redis hash at dataKey(key): field "v" its value, field "n" its
// version; its expiry is the hash's own (PEXPIREAT), so Redis drops it when it expires. Each
// slot's revision counter is a string at revisionKey(slot), and an idempotent call's record
// in that slot a string at recordKey(slot, request_id) that expires with the idempotency
// window. Both scripts touch only keys of one slot, KEYS[1] being that slot's counter; Lua
// numbers are doubles, so versions are exact up to 2^53.

// applyScript applies one slot's writes. KEYS[1] is the slot's revision counter, KEYS[2] the
// call's idempotency record in this slot (KEYS[1] again when the call has none), then one key
// per write. ARGV[1] is "a" (atomic: all or none) or "b" (best effort: each write whose
// precondition holds); ARGV[2] the call's payload digest ("" for no record); ARGV[3] when the
// record expires (Unix ms); ARGV[4] the most bytes the record may hold; then per write, five
// arguments: "p" (put) or "d" (delete), the expected version (-1 any, 0 absent, n), the expiry
// in Unix ms (0 never), the write's index in the call and the value.
//
// A record is the digest followed by one 21-byte entry per write it remembers (recordEntry:
// index, code, the key's version before the call, the revision it applied at or 0). A write
// the record remembers is answered from it and not checked or written again; a record with
// another digest fails the whole script with {-1}. The other writes are checked first,
// exactly as store.Memory checks them, then, when something applies, the slot's next revision
// is drawn and they are written, and their outcomes appended to the record in the same
// script: the record and the writes are one step, so two processes running the same call
// apply it once. (A record that would grow past ARGV[4] is left as it is: those writes are
// not remembered.) A script that replays and appends nothing rewrites the record's expiry, a
// write that replicates after the record, so that the WAIT after it confirms the replayed writes too.
//
// It returns the revision it drew (0 when it applied nothing), how many writes it replayed,
// how many it could not record, then per write its code (store.Code), the key's version
// before the call and the revision the write applied at (0 when it did not).
const applyScript = `
local n = #KEYS - 2
local atomic = ARGV[1] == 'a'
local digest = ARGV[2]
local record = false
local prior = {}
if digest ~= '' then
  record = redis.call('GET', KEYS[2])
  if record then
    if string.sub(record, 1, #digest) ~= digest then return {-1} end
    local p = #digest + 1
    while p + 20 <= #record do
      local i, code, before, rev
      i, code, before, rev, p = struct.unpack('>I4Bdd', record, p)
      prior[i] = {code, before, rev}
    end
  end
end
local codes, versions, revs = {}, {}, {}
local fresh, ok, replayed = 0, 0, 0
for i = 1, n do
  local a = 5 + (i - 1) * 5
  local p = prior[tonumber(ARGV[a + 3])]
  if p then
    codes[i], versions[i], revs[i] = p[1], p[2], p[3]
    replayed = replayed + 1
  else
    local del = ARGV[a] == 'd'
    local expect = tonumber(ARGV[a + 1])
    local version = tonumber(redis.call('HGET', KEYS[i + 2], 'n') or '0')
    local code = 0
    if expect == 0 and version ~= 0 then code = 3
    elseif expect > 0 and expect ~= version then code = 2
    elseif del and version == 0 then code = 1 end
    codes[i], versions[i], revs[i] = code, version, 0
    fresh = fresh + 1
    if code == 0 then ok = ok + 1 end
  end
end
local rev = 0
if ok > 0 and (ok == fresh or not atomic) then
  rev = redis.call('INCR', KEYS[1])
  for i = 1, n do
    local a = 5 + (i - 1) * 5
    if codes[i] == 0 and not prior[tonumber(ARGV[a + 3])] then
      revs[i] = rev
      local k = KEYS[i + 2]
      if ARGV[a] == 'd' then
        redis.call('DEL', k)
      else
        redis.call('HSET', k, 'v', ARGV[a + 4], 'n', rev)
        local at = tonumber(ARGV[a + 2])
        if at > 0 then redis.call('PEXPIREAT', k, at) else redis.call('PERSIST', k) end
      end
    end
  end
end
local unrecorded, appended = 0, false
if digest ~= '' and fresh > 0 then
  local parts = {}
  for i = 1, n do
    local idx = tonumber(ARGV[5 + (i - 1) * 5 + 3])
    if not prior[idx] then
      parts[#parts + 1] = struct.pack('>I4Bdd', idx, codes[i], versions[i], revs[i])
    end
  end
  local add = table.concat(parts)
  local have = record and #record or #digest
  if have + #add > tonumber(ARGV[4]) then
    unrecorded = fresh
  elseif record then
    redis.call('APPEND', KEYS[2], add)
    appended = true
  else
    redis.call('SET', KEYS[2], digest .. add, 'PXAT', ARGV[3])
    appended = true
  end
end
if replayed > 0 and not appended then
  redis.call('PEXPIREAT', KEYS[2], redis.call('PEXPIRETIME', KEYS[2]))
end
local out = {rev, replayed, unrecorded}
for i = 1, n do
  out[#out + 1] = codes[i]
  out[#out + 1] = versions[i]
  out[#out + 1] = revs[i]
end
return out
`

// recordEntryBytes is the size of one write's entry in an idempotency record (struct format
// ">I4Bdd").
const recordEntryBytes = 21

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
