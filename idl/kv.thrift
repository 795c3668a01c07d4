// putallkv API: the one source of the wire contract. kitex_gen/ is generated from this file by
// script/gen.sh; never edit the generated code by hand.
namespace go kv

// WriteMode selects how a multi-key write applies.
enum WriteMode {
    // ATOMIC: every entry applies or none does; all applied keys share one revision.
    ATOMIC = 0,
    // BEST_EFFORT: each entry applies on its own; the response has a result per key.
    BEST_EFFORT = 1,
}

// ErrorCode is the stable, machine-readable outcome of a call or of one key in a batch.
// Each maps one-to-one onto an HTTP status (in brackets).
enum ErrorCode {
    OK = 0,
    INVALID_ARGUMENT = 1,      // [400] malformed request
    NOT_FOUND = 2,             // [404] key absent (or expired)
    VERSION_MISMATCH = 3,      // [412] expected_version > 0 did not match
    ALREADY_EXISTS = 4,        // [412] expected_version = 0 but the key exists
    RESOURCE_EXHAUSTED = 5,    // [429] admission refused; see retry_after_ms
    IDEMPOTENCY_CONFLICT = 6,  // [422] request_id reused with a different payload
    TOO_LARGE = 7,             // [413] key, value, batch or request over a configured bound
    UNAUTHENTICATED = 8,       // [401] no token, or one the server does not know
    UNAVAILABLE = 9,           // [503] the service cannot take the call now
    INTERNAL = 10,             // [500] a bug; never the caller's fault
    PERMISSION_DENIED = 11,    // [403] the token is valid but its role does not allow the call
    CROSS_SLOT = 12,           // [400] an ATOMIC write's keys span hash slots of a slot-partitioned engine
}

// Entry is one key to write. expected_version: absent = unconditional, 0 = create-only,
// n > 0 = the key's current version must be n. ttl_ms > 0 makes the key expire that many
// milliseconds after the write.
struct Entry {
    1: string key,
    2: binary value,
    3: optional i64 expected_version,
    4: optional i64 ttl_ms,
}

// KeyStatus is the outcome for one key of a multi-key call, in request order. (Not named
// KeyResult: the generator reserves the Result suffix and would rename it KeyResult_.)
// version is the key's new version when code is OK, else its current version (0 if absent).
struct KeyStatus {
    1: string key,
    2: ErrorCode code,
    3: i64 version,
}

// Item is one key read by GetAll. found is false for an absent or expired key.
// expires_at_ms is the Unix time in milliseconds at which the key expires, 0 for never.
struct Item {
    1: string key,
    2: binary value,
    3: i64 version,
    4: bool found,
    5: i64 expires_at_ms,
}

// KVError is the one exception every method throws. failed lists the keys that made a
// multi-key call fail (for ATOMIC writes: every failing key).
exception KVError {
    1: ErrorCode code,
    2: string message,
    3: i64 retry_after_ms,
    4: list<KeyStatus> failed,
}

struct PutRequest {
    1: string key,
    2: binary value,
    3: optional i64 expected_version,
    4: optional i64 ttl_ms,
    5: optional string request_id,
}

// PutResponse: version is the key's new version (= the write's revision); created is true
// when the key did not exist before.
struct PutResponse {
    1: i64 version,
    2: bool created,
    3: bool replayed,
    // The batch size the server's write admission can take now (see docs/admission.md, the admission
    // model): a client sizing its batches should move toward it.
    4: i32 suggested_batch,
}

struct GetRequest {
    1: string key,
}

struct GetResponse {
    1: Item item,
}

struct DeleteRequest {
    1: string key,
    2: optional i64 expected_version,
    3: optional string request_id,
}

// DeleteResponse: revision is the revision of the delete.
struct DeleteResponse {
    1: i64 revision,
    2: bool replayed,
    // The batch size the server's write admission can take now (see docs/admission.md, the admission
    // model): a client sizing its batches should move toward it.
    3: i32 suggested_batch,
}

struct PutAllRequest {
    1: list<Entry> entries,
    2: WriteMode mode,
    3: optional string request_id,
}

// PutAllResponse: revision is the revision of the write (shared by every applied key), 0 when
// nothing applied; a BEST_EFFORT batch that admission split into chunks has one revision per
// chunk, and revision is the last. applied counts the keys written. results is empty when
// every entry was applied at revision (always so for a successful ATOMIC call): each key's
// version is then revision. Otherwise results line up with the request's entries, one each.
// replayed is true when this is the stored response of an earlier call with the same
// request_id.
struct PutAllResponse {
    1: list<KeyStatus> results,
    2: i64 revision,
    3: i32 applied,
    4: bool replayed,
    // The batch size the server's write admission can take now (see docs/admission.md, the admission
    // model): a client sizing its batches should move toward it.
    5: i32 suggested_batch,
    // When some BEST_EFFORT entries were not admitted in time (code RESOURCE_EXHAUSTED in
    // their results), how long to wait before resending exactly those.
    6: i64 retry_after_ms,
}

struct GetAllRequest {
    1: list<string> keys,
}

// GetAllResponse: items line up with the request's keys; revision is the store revision the
// read observed (every item is as of that revision).
struct GetAllResponse {
    1: list<Item> items,
    2: i64 revision,
}

// DeleteEntry is one key to delete, with the same expected_version rules as Entry
// (except that 0, create-only, is meaningless for a delete and refused).
struct DeleteEntry {
    1: string key,
    2: optional i64 expected_version,
}

struct DeleteAllRequest {
    1: list<DeleteEntry> entries,
    2: WriteMode mode,
    3: optional string request_id,
}

// DeleteAllResponse: as PutAllResponse.
struct DeleteAllResponse {
    1: list<KeyStatus> results,
    2: i64 revision,
    3: i32 applied,
    4: bool replayed,
    // The batch size the server's write admission can take now (see docs/admission.md, the admission
    // model): a client sizing its batches should move toward it.
    5: i32 suggested_batch,
    // When some BEST_EFFORT entries were not admitted in time (code RESOURCE_EXHAUSTED in
    // their results), how long to wait before resending exactly those.
    6: i64 retry_after_ms,
}

// PutAllManyRequest carries independent PutAll calls in one round trip: the SDK's coalescing
// client (kvclient.WithCoalescing) gathers the PutAll calls of concurrent callers into one.
// Each call keeps all of its own semantics (mode, preconditions, limits, request_id, its own
// revision, admission); nothing orders the calls or ties them to one another. At most
// limits.max_batch_entries calls.
struct PutAllManyRequest {
    1: list<PutAllRequest> calls,
}

// PutAllOutcome is one call's outcome: response when it succeeded, else error, exactly what
// a PutAll of that call alone would have returned or thrown.
struct PutAllOutcome {
    1: optional PutAllResponse response,
    2: optional KVError error,
}

// PutAllManyResponse: outcomes line up with the request's calls, one each.
struct PutAllManyResponse {
    1: list<PutAllOutcome> outcomes,
}

// ScanRequest asks for one page of the keys that start with prefix (empty: every key). cursor
// is empty for the first page, else the next_cursor of the page before, unchanged: it is opaque,
// valid for this prefix only, and refused (INVALID_ARGUMENT) when the server did not make it or
// restarted since (on the memory and durable engines). limit is the most items of the page:
// 0 means the server's limits.max_scan_entries, more than it is refused. keys_only leaves the
// values out. snapshot, on the first page, makes every page of the scan show the store as of
// one revision (the memory and durable engines; see docs/api.md, Scan): the server keeps that
// cut until the last page, or until the scan is idle for a minute; later pages follow their
// cursor, whatever snapshot says.
struct ScanRequest {
    1: string prefix,
    2: string cursor,
    3: i32 limit,
    4: bool keys_only,
    5: bool snapshot,
}

// ScanResponse is one page: items (found is true in each; value empty with keys_only) are in
// the engine's order, which is not the keys' order; a page holds at most limit items and at most
// limits.max_scan_bytes of keys and values (but always its first item), and may hold fewer, even
// none, before the end. next_cursor continues the scan; it is empty when the scan is over. Every
// key present for the whole scan is returned exactly once; keys written or deleted meanwhile
// may or may not be; an expired key never is. Items are not one snapshot: each is its key's
// state at some moment of the call. revision is a revision every item's version is at or below
// (0 on the redis_cluster engine when the page read more than one hash slot).
struct ScanResponse {
    1: list<Item> items,
    2: string next_cursor,
    3: i64 revision,
}

// LoadChunk is one message of a Load stream: entries written BEST_EFFORT, with every rule of
// a BEST_EFFORT PutAll of them (validation, limits.max_batch_entries, preconditions, TTLs,
// admission), and a number the client chose (chunk), which its ack repeats.
struct LoadChunk {
    1: i64 chunk,
    2: list<Entry> entries,
}

// LoadAck answers one LoadChunk, in the order the chunks came. error, when set, is what a PutAll
// of the chunk would have thrown: the chunk was refused as a whole and nothing of it written.
// Otherwise results, revision and applied are as in PutAllResponse (results empty when every
// entry was applied at revision); an entry not admitted before the server gave up waiting
// (Load waits for admission up to its idle bound) is RESOURCE_EXHAUSTED with version 0, and
// retry_after_ms says when to resend it.
struct LoadAck {
    1: i64 chunk,
    2: list<KeyStatus> results,
    3: i64 revision,
    4: i32 applied,
    5: i64 retry_after_ms,
    6: optional KVError error,
}

service KVService {
    PutResponse Put(1: PutRequest req) throws (1: KVError err),
    GetResponse Get(1: GetRequest req) throws (1: KVError err),
    DeleteResponse Delete(1: DeleteRequest req) throws (1: KVError err),
    PutAllResponse PutAll(1: PutAllRequest req) throws (1: KVError err),
    GetAllResponse GetAll(1: GetAllRequest req) throws (1: KVError err),
    DeleteAllResponse DeleteAll(1: DeleteAllRequest req) throws (1: KVError err),
    // PutAllMany runs several PutAll calls in one round trip (see PutAllManyRequest). It
    // throws only when the request as a whole is refused; each call's own failure is in its
    // outcome.
    PutAllManyResponse PutAllMany(1: PutAllManyRequest req) throws (1: KVError err),
    // Scan lists the keys that start with a prefix, a page at a time (see ScanRequest).
    ScanResponse Scan(1: ScanRequest req) throws (1: KVError err),
    // Load is the streaming bulk load (TTHeader streaming; see docs/moving-data.md): the client
    // sends LoadChunks, the server answers each with a LoadAck, in order. A stream refused or
    // ended by the server carries the ErrorCode as a Kitex business status.
    LoadAck Load(1: LoadChunk req) (streaming.mode="bidirectional"),
}
