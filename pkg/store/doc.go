// Package store is the key-value engine behind putallkv: multi-key writes that apply atomically
// or key by key, with a store-wide revision and a version per key.
//
// # Engines
//
// Engine is what the service needs of an engine, and all it may assume. Two engines are here:
//   - Memory keeps the keys in memory, in shards that lock independently (shard.go: an arena and
//     a hash index that keep millions of keys out of the garbage collector's sight), under an
//     optional memory quota (quota.go).
//   - Durable composes a Memory with a write-ahead log and snapshots (pkg/wal) in a data
//     directory. The Memory checks each batch and draws its revision; it tells its committer,
//     the Durable, of each batch it commits, with the batch's shards locked and in revision
//     order; the Durable appends the batch's record to the log, and Apply returns once the log
//     has it durable. At open, the Durable restores the newest snapshot into the Memory and
//     replays the log after it. The committer interface is all a Memory sees of a Durable: it
//     knows nothing of logs, positions or durability.
//
// # Semantics
//
// Every batch that applies something takes the next store-wide revision, shared by all its keys;
// a key's version is the revision of its last write. A write may carry a precondition
// (Write.ExpectedVersion): none, create-only, or the key's current version. An Atomic batch
// applies every write or none; a BestEffort batch applies each write whose precondition holds. A
// key may appear once per batch (*DuplicateKeyError). A key with a TTL reads as absent once it
// has expired, and counts as absent for preconditions. A batch that would raise the store's
// bytes over its quota is refused whole (*QuotaError). GetAll reads as of one revision. The
// scripts under testdata/semantics state this contract operation by operation, and are run
// against both engines (semantics_test.go).
//
// # On-disk format, version 2
//
// A Durable's data directory is pkg/wal's (segment files, snapshot files, LAST_SEGMENT, LOCK and
// repair folders: see its documentation). Format version 2 is version 1 of pkg/wal's segment and
// snapshot files holding version 1 of the log record and version 2 of the snapshot body below;
// format version 1 differs only in its snapshot body (version 1), which is still read. In the layouts,
// uvarint and varint are encoding/binary's variable-length integers, and bytes is a uvarint
// length followed by that many bytes.
//
// A log record (the payload of one wal record) is one batch that applied something: a failed
// Atomic batch, or a BestEffort batch whose every write failed, is not logged. Every write of the
// batch is in it with its outcome, so that recovery gives the batch's results back with its tag.
//
//	version    byte (1)
//	revision   uint64, little-endian (fixed width, so it can be set once drawn)
//	tag        bytes (empty: none)
//	count      uvarint
//	entries    count times:
//	  code     byte (Code: 0 OK, 1 NOT_FOUND, 2 VERSION_MISMATCH, 3 ALREADY_EXISTS)
//	  key      bytes
//	  OK:      flags byte (1 delete, 2 created); a put then has
//	           value bytes, expires_at_ms varint (Unix ms, 0 = never)
//	  not OK:  the key's version varint
//
// An applied write's version is the record's revision. A snapshot body (the caller's bytes of a
// wal snapshot file at LSN s) is:
//
//	version    uvarint (2)
//	revision   varint: the store's revision at the cut
//	items      each a kind byte, then:
//	  3 block: bytes, holding whole entries one after the other, each
//	           version int64, expires_at_ms int64 (Unix ms, 0 = never), key length uint32,
//	           value length uint32 (all little-endian), the key, the value
//	  2 tag:   bytes (a tag SnapshotTags returned)
//	  0 end:   nothing; no byte may follow
//
// An entry in a block is laid out as the store keeps it in memory (shard.go's arena), and a block
// is cut at 4 MiB (an entry larger than that has one of its own), the largest chunk the arena
// makes: recovery makes each block a chunk of the shards whose keys it holds and indexes the
// entries where they are, instead of copying them one by one. Version 1 of the body has, instead
// of blocks, items of kind 1 entry: key bytes, value bytes, version varint, expires_at_ms varint.
//
// A snapshot is fuzzy: the entries are copied shard by shard while writes go on, and the cut is a
// log position s taken between two commits; recovery replays every record after s, and
// re-applying a batch the copy already holds is harmless. Entries include keys that have expired
// but were not freed yet. Recovery restores every entry and every applied write whatever the
// quota, and sets the revision to the largest of the snapshot's, its entries' versions and the
// replayed records' revisions.
//
// A Batch's Tag is opaque to the store: it is logged with the batch and handed back at recovery
// (DurableOptions.Recovered) with the batch's revision, keys and results; tags SnapshotTags
// returns are saved in each snapshot and handed back with revision 0. putallkv's service
// (biz/service/recovery.go) tags every write that carries a request_id, so that the responses it
// remembers survive a restart:
//
//	version     byte (1)
//	method      bytes: "Put", "Delete", "PutAll" or "DeleteAll"
//	request_id  bytes
//	digest      32 bytes: SHA-256 of the call's payload (its method and every field but request_id)
//	created     varint: when the first call began, Unix ms
//	offset      uvarint: the batch holds entries [offset, offset+count) of the call,
//	total       uvarint: of total entries (admission splits a BEST_EFFORT call into batches)
//
// A tag saved in a snapshot is a tag (offset 0, total 1) followed by the call's response in
// Thrift binary (kv.PutResponse, kv.DeleteResponse, kv.PutAllResponse or kv.DeleteAllResponse).
// The service ignores a tag it cannot parse: that request_id is forgotten.
//
// A change to any of these layouts that older readers cannot read raises that layout's version
// number and the format version, and commits a golden data directory of the new version beside
// testdata/golden-v1 and golden-v2, which golden_test.go keeps opening and checking.
package store
