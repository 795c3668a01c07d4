package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
)

// A key's state lives in one Redis string at dataKey(key): an entry (entry.go), its version and
// expiry as a 16-byte header followed by the value; the string's own expiry is the same instant
// (PXAT), so Redis drops it when it expires. Each slot's revision counter is a string at
// revisionKey(slot), and an idempotent call's record in that slot a string at
// recordKey(slot, request_id) that expires with the idempotency window. The script touches only
// keys of one slot, KEYS[1] being that slot's counter; Lua numbers are doubles, so versions are
// exact up to 2^53. Reads need no script: one MGET of a slot's counter and keys is atomic.

// applyScript applies one slot's writes. KEYS[1] is the slot's revision counter, KEYS[2] the
// call's idempotency record in this slot (KEYS[1] again when the call has none), then one key
// per write. ARGV[1] is "a" (atomic: all or none) or "b" (best effort: each write whose
// precondition holds); ARGV[2] the call's payload digest ("" for no record); ARGV[3] when the
// record expires (Unix ms); ARGV[4] the most bytes the record may hold; ARGV[5] the writes'
// indexes in the call, 4 bytes each, big-endian ("" for no record); ARGV[6] the writes'
// conditions, 16 bytes each: the expected version (-1 any, 0 absent, n) and the expiry in
// Unix ms (0 never), both 8 bytes, big-endian ("" when every write is a put of neither); then
// per write the entry's tail (entryTail: expiry and value) of a put, or "" for a delete.
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
// What a script costs Redis is mostly not the commands it runs but the script around them
// (measured on Redis 7.0: a call of 16 puts without expiry spends about 10 µs in its commands
// and 50-80 in the script): each redis.call costs a few microseconds besides its command, each
// argument, table and element of the answer a fraction of one. So the script takes one argument per write, makes few redis.call's, each
// for many keys, and answers with one string: it reads the versions of its keys with one MGET
// (16 keys at a time, so that large values do not pile up in the script's memory), writes every
// put with one MSET and every delete with one DEL (1000 arguments at a time, within Lua's
// stack), and only a put with an expiry costs one more call (PEXPIREAT, since MSET clears a
// key's expiry). A call of 16 puts without expiry is MGET, INCR and MSET.
//
// It returns the revision it drew (0 when it applied nothing), how many writes it replayed, how
// many it could not record, then a string of 17 bytes per write (resultEntryBytes): its code
// (store.Code), the key's version before the call and the revision the write applied at (0 when
// it did not), the last two 8 bytes big-endian.
const applyScript = `
local n = #KEYS - 2
local atomic = ARGV[1] == 'a'
local digest = ARGV[2]
local conds = ARGV[6]
local record = false
local held = {}
local replayed = 0
if digest ~= '' then
  record = redis.call('GET', KEYS[2])
  if record then
    if string.sub(record, 1, #digest) ~= digest then return {-1} end
    local prior = {}
    local p = #digest + 1
    while p + 20 <= #record do
      local i, code, before, rev
      i, code, before, rev, p = struct.unpack('>I4Bdd', record, p)
      prior[i] = {code, before, rev}
    end
    for i = 1, n do
      local h = prior[(struct.unpack('>I4', ARGV[5], 4 * i - 3))]
      if h then
        held[i] = h
        replayed = replayed + 1
      end
    end
  end
end
local fresh = n - replayed
local codes, versions, revs = {}, {}, {}
local ks, at, m = {}, {}, 0
local function versionsOf()
  local vs = redis.call('MGET', unpack(ks, 1, m))
  for j = 1, m do
    local v = vs[j]
    versions[at[j]] = v and #v >= 8 and (struct.unpack('>I8', v)) or 0
  end
  m = 0
end
for i = 1, n do
  if not held[i] then
    m = m + 1
    ks[m], at[m] = KEYS[i + 2], i
    if m == 16 then versionsOf() end
  end
end
if m > 0 then versionsOf() end
local ok = 0
for i = 1, n do
  local h = held[i]
  if h then
    codes[i], versions[i], revs[i] = h[1], h[2], h[3]
  else
    local v, code = versions[i], 0
    if conds ~= '' then
      local e = struct.unpack('>i8', conds, 16 * i - 15)
      if e == 0 and v ~= 0 then code = 3
      elseif e > 0 and e ~= v then code = 2 end
    end
    if code == 0 and v == 0 and ARGV[6 + i] == '' then code = 1 end
    codes[i], revs[i] = code, 0
    if code == 0 then ok = ok + 1 end
  end
end
local rev = 0
if ok > 0 and (ok == fresh or not atomic) then
  rev = redis.call('INCR', KEYS[1])
  local head = struct.pack('>I8', rev)
  local sets, ns, dels, nd = {}, 0, {}, 0
  for i = 1, n do
    if codes[i] == 0 and not held[i] then
      revs[i] = rev
      local tail = ARGV[6 + i]
      if tail == '' then
        nd = nd + 1
        dels[nd] = KEYS[i + 2]
      else
        sets[ns + 1], sets[ns + 2] = KEYS[i + 2], head .. tail
        ns = ns + 2
      end
    end
  end
  for c = 1, ns, 1000 do redis.call('MSET', unpack(sets, c, c + 999 < ns and c + 999 or ns)) end
  for c = 1, nd, 1000 do redis.call('DEL', unpack(dels, c, c + 999 < nd and c + 999 or nd)) end
  if conds ~= '' then
    for i = 1, n do
      if revs[i] == rev and not held[i] and ARGV[6 + i] ~= '' then
        local t = struct.unpack('>i8', conds, 16 * i - 7)
        if t > 0 then redis.call('PEXPIREAT', KEYS[i + 2], string.format('%d', t)) end
      end
    end
  end
end
local unrecorded, appended = 0, false
if digest ~= '' and fresh > 0 then
  local parts, np = {}, 0
  for i = 1, n do
    if not held[i] then
      np = np + 1
      parts[np] = struct.pack('>I4Bdd', (struct.unpack('>I4', ARGV[5], 4 * i - 3)), codes[i], versions[i], revs[i])
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
local out = {}
for c = 1, n, 400 do
  local last = c + 399 < n and c + 399 or n
  local vals, k = {}, 0
  for i = c, last do
    vals[k + 1], vals[k + 2], vals[k + 3] = codes[i], versions[i], revs[i]
    k = k + 3
  end
  out[#out + 1] = struct.pack('>' .. string.rep('BI8I8', last - c + 1), unpack(vals, 1, k))
end
return {rev, replayed, unrecorded, table.concat(out)}
`

// resultEntryBytes is the size of one write's result in the apply script's answer (struct
// format ">BI8I8").
const resultEntryBytes = 17

// recordEntryBytes is the size of one write's entry in an idempotency record (struct format
// ">I4Bdd").
const recordEntryBytes = 21

// script is a Lua script and its SHA-1, by which EVALSHA names it.
type script struct{ body, sha string }

func newScript(body string) script {
	sum := sha1.Sum([]byte(body))
	return script{body: body, sha: hex.EncodeToString(sum[:])}
}

var applyLua = newScript(applyScript)
