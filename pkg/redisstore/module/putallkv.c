/* putallkv's Redis module: PUTALL.APPLY, the redis_cluster engine's apply script
 * (pkg/redisstore/scripts.go) as a native command. It takes the script's arguments after a
 * key count, as EVALSHA does:
 *
 *   PUTALL.APPLY numkeys counter record key... mode digest record-expiry record-bytes
 *                indexes conditions tail...
 *
 * and answers exactly as the script does: {revision, replayed, unrecorded, results}, or {-1}
 * when the call's record holds another payload. scripts.go says what every argument and
 * answer means. A Lua script spends most of its time in Lua around its few commands (about
 * three quarters of a call of 16 puts on a Redis 7.0 master); this command does the same work
 * without the interpreter. Its writes replicate as the commands they are (INCR, MSET,
 * DEL, PEXPIREAT, APPEND, SET), so replicas and the append-only file need no module.
 *
 * Build: script/redis-module.sh. Load: redis-server --loadmodule putallkv.so, on every node
 * that may become a master. Versions are kept as Lua keeps them, as doubles (exact up to
 * 2^53), so that both answer alike. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redismodule.h"

#define RECORD_ENTRY 21 /* index (4), code (1), version before (8, double), revision (8, double) */
#define RESULT_ENTRY 17 /* code (1), version before (8), revision (8) */

/* The codes of store.Code the command sets itself. */
enum { CODE_OK = 0, CODE_NOT_FOUND = 1, CODE_VERSION_MISMATCH = 2, CODE_ALREADY_EXISTS = 3 };

static uint64_t get64(const char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | (unsigned char)p[i];
    return v;
}

static uint32_t get32(const char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | (unsigned char)p[i];
    return v;
}

static void put64(char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (char)(v & 0xff);
}

static double getDouble(const char *p) {
    uint64_t u = get64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void putDouble(char *p, double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    put64(p, u);
}

/* A write the call's record remembers: its index in the call and its outcome then. order is
 * its place in the record, so that a later entry for the same index wins, as in the script. */
typedef struct {
    uint32_t index;
    size_t order;
    unsigned char code;
    double before, rev;
} prior;

static int byIndex(const void *a, const void *b) {
    const prior *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* lastFor is the last entry of sorted for index, or NULL. */
static const prior *lastFor(const prior *sorted, size_t n, uint32_t index) {
    size_t lo = 0, hi = n; /* the first entry past index */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid].index <= index) lo = mid + 1;
        else hi = mid;
    }
    return lo > 0 && sorted[lo - 1].index == index ? &sorted[lo - 1] : NULL;
}

/* keyCount reads numkeys: at least the counter, the record and one write, within argc. */
static int keyCount(RedisModuleString **argv, int argc, long long *numkeys) {
    return argc >= 2 && RedisModule_StringToLongLong(argv[1], numkeys) == REDISMODULE_OK &&
           *numkeys >= 3 && *numkeys <= argc - 2;
}

/* failed answers a command's error reply in place of the answer, when r is one. */
static int failed(RedisModuleCtx *ctx, RedisModuleCallReply *r) {
    if (r == NULL) {
        RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: a command it ran failed");
        return 1;
    }
    if (RedisModule_CallReplyType(r) == REDISMODULE_REPLY_ERROR) {
        RedisModule_ReplyWithCallReply(ctx, r);
        return 1;
    }
    return 0;
}

static int apply(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    long long numkeys;
    if (RedisModule_IsKeysPositionRequest(ctx)) {
        if (keyCount(argv, argc, &numkeys))
            for (long long i = 0; i < numkeys; i++) RedisModule_KeyAtPos(ctx, (int)(2 + i));
        return REDISMODULE_OK;
    }
    RedisModule_AutoMemory(ctx);
    if (!keyCount(argv, argc, &numkeys))
        return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: numkeys must be 3 or more, and no more than the arguments after it");
    int n = (int)numkeys - 2;
    if ((long long)argc != 2 + numkeys + 6 + n)
        return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: wants 6 arguments and then one per write after the keys");
    RedisModuleString **keys = argv + 2, **args = argv + 2 + numkeys, **tails = args + 6;

    size_t modeLen, digestLen, indexesLen, condsLen;
    const char *mode = RedisModule_StringPtrLen(args[0], &modeLen);
    const char *digest = RedisModule_StringPtrLen(args[1], &digestLen);
    const char *indexes = RedisModule_StringPtrLen(args[4], &indexesLen);
    const char *conds = RedisModule_StringPtrLen(args[5], &condsLen);
    int atomic = modeLen == 1 && mode[0] == 'a';
    long long maxRecord, recordExpiry;
    if (RedisModule_StringToLongLong(args[3], &maxRecord) != REDISMODULE_OK)
        return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: the record's byte bound is not an integer");
    if (digestLen > 0 && (indexesLen != 4 * (size_t)n || RedisModule_StringToLongLong(args[2], &recordExpiry) != REDISMODULE_OK))
        return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: a call with a record needs 4 bytes of index per write and an expiry");
    if (condsLen != 0 && condsLen != 16 * (size_t)n)
        return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: conditions must be empty or 16 bytes per write");
    size_t *tailLen = RedisModule_PoolAlloc(ctx, n * sizeof *tailLen);
    const char **tail = RedisModule_PoolAlloc(ctx, n * sizeof *tail);
    for (int i = 0; i < n; i++) {
        tail[i] = RedisModule_StringPtrLen(tails[i], &tailLen[i]);
        if (tailLen[i] != 0 && tailLen[i] < 8)
            return RedisModule_ReplyWithError(ctx, "ERR PUTALL.APPLY: a put's tail must hold its 8-byte expiry");
    }

    char *held = RedisModule_PoolAlloc(ctx, n);
    unsigned char *codes = RedisModule_PoolAlloc(ctx, n);
    double *versions = RedisModule_PoolAlloc(ctx, n * sizeof *versions);
    double *revs = RedisModule_PoolAlloc(ctx, n * sizeof *revs);
    memset(held, 0, n);
    int replayed = 0, haveRecord = 0;
    size_t recordLen = 0;
    if (digestLen > 0) {
        RedisModuleKey *k = RedisModule_OpenKey(ctx, keys[1], REDISMODULE_READ);
        int type = RedisModule_KeyType(k);
        if (type != REDISMODULE_KEYTYPE_EMPTY && type != REDISMODULE_KEYTYPE_STRING)
            return RedisModule_ReplyWithError(ctx, "WRONGTYPE Operation against a key holding the wrong kind of value");
        if (type == REDISMODULE_KEYTYPE_STRING) {
            const char *record = RedisModule_StringDMA(k, &recordLen, REDISMODULE_READ);
            haveRecord = 1;
            if (recordLen < digestLen || memcmp(record, digest, digestLen) != 0) {
                RedisModule_ReplyWithArray(ctx, 1);
                return RedisModule_ReplyWithLongLong(ctx, -1);
            }
            size_t m = (recordLen - digestLen) / RECORD_ENTRY;
            prior *priors = RedisModule_PoolAlloc(ctx, (m ? m : 1) * sizeof *priors);
            for (size_t j = 0; j < m; j++) {
                const char *p = record + digestLen + j * RECORD_ENTRY;
                priors[j] = (prior){.index = get32(p), .order = j, .code = (unsigned char)p[4],
                                    .before = getDouble(p + 5), .rev = getDouble(p + 13)};
            }
            RedisModule_CloseKey(k);
            qsort(priors, m, sizeof *priors, byIndex);
            for (int i = 0; i < n; i++) {
                const prior *h = lastFor(priors, m, get32(indexes + 4 * i));
                if (h) {
                    held[i] = 1;
                    codes[i] = h->code, versions[i] = h->before, revs[i] = h->rev;
                    replayed++;
                }
            }
        } else {
            RedisModule_CloseKey(k);
        }
    }

    /* The versions of the writes not replayed, then their checks, as the script makes them. */
    int fresh = n - replayed, ok = 0;
    for (int i = 0; i < n; i++) {
        if (held[i]) continue;
        RedisModuleKey *k = RedisModule_OpenKey(ctx, keys[2 + i], REDISMODULE_READ);
        double v = 0;
        if (RedisModule_KeyType(k) == REDISMODULE_KEYTYPE_STRING) {
            size_t len;
            const char *entry = RedisModule_StringDMA(k, &len, REDISMODULE_READ);
            if (len >= 8) v = (double)get64(entry);
        }
        RedisModule_CloseKey(k);
        int code = CODE_OK;
        if (condsLen) {
            int64_t expect = (int64_t)get64(conds + 16 * i);
            if (expect == 0 && v != 0) code = CODE_ALREADY_EXISTS;
            else if (expect > 0 && (double)expect != v) code = CODE_VERSION_MISMATCH;
        }
        if (code == CODE_OK && v == 0 && tailLen[i] == 0) code = CODE_NOT_FOUND;
        codes[i] = (unsigned char)code, versions[i] = v, revs[i] = 0;
        if (code == CODE_OK) ok++;
    }

    long long rev = 0;
    if (ok > 0 && (ok == fresh || !atomic)) {
        RedisModuleCallReply *r = RedisModule_Call(ctx, "INCR", "!s", keys[0]);
        if (failed(ctx, r)) return REDISMODULE_OK;
        rev = RedisModule_CallReplyInteger(r);
        RedisModuleString **sets = RedisModule_PoolAlloc(ctx, 2 * n * sizeof *sets);
        RedisModuleString **dels = RedisModule_PoolAlloc(ctx, n * sizeof *dels);
        size_t ns = 0, nd = 0;
        for (int i = 0; i < n; i++) {
            if (held[i] || codes[i] != CODE_OK) continue;
            revs[i] = (double)rev;
            if (tailLen[i] == 0) {
                dels[nd++] = keys[2 + i];
                continue;
            }
            char *entry = RedisModule_PoolAlloc(ctx, 8 + tailLen[i]);
            put64(entry, (uint64_t)rev);
            memcpy(entry + 8, tail[i], tailLen[i]);
            sets[ns++] = keys[2 + i];
            sets[ns++] = RedisModule_CreateString(ctx, entry, 8 + tailLen[i]);
        }
        if (ns && failed(ctx, RedisModule_Call(ctx, "MSET", "!v", sets, ns))) return REDISMODULE_OK;
        if (nd && failed(ctx, RedisModule_Call(ctx, "DEL", "!v", dels, nd))) return REDISMODULE_OK;
        for (int i = 0; condsLen && i < n; i++) {
            if (held[i] || revs[i] != (double)rev || tailLen[i] == 0) continue;
            long long at = (long long)get64(conds + 16 * i + 8);
            if (at > 0 && failed(ctx, RedisModule_Call(ctx, "PEXPIREAT", "!sl", keys[2 + i], at))) return REDISMODULE_OK;
        }
    }

    int unrecorded = 0, appended = 0;
    if (digestLen > 0 && fresh > 0) {
        size_t addLen = (size_t)fresh * RECORD_ENTRY, have = haveRecord ? recordLen : digestLen;
        char *record = RedisModule_PoolAlloc(ctx, digestLen + addLen), *add = record + digestLen;
        memcpy(record, digest, digestLen);
        for (int i = 0, j = 0; i < n; i++) {
            if (held[i]) continue;
            char *p = add + (j++) * RECORD_ENTRY;
            memcpy(p, indexes + 4 * i, 4);
            p[4] = (char)codes[i];
            putDouble(p + 5, versions[i]);
            putDouble(p + 13, revs[i]);
        }
        if ((long long)(have + addLen) > maxRecord) {
            unrecorded = fresh;
        } else if (haveRecord) {
            if (failed(ctx, RedisModule_Call(ctx, "APPEND", "!sb", keys[1], add, addLen))) return REDISMODULE_OK;
            appended = 1;
        } else {
            if (failed(ctx, RedisModule_Call(ctx, "SET", "!sbcs", keys[1], record, digestLen + addLen, "PXAT", args[2]))) return REDISMODULE_OK;
            appended = 1;
        }
    }
    if (replayed > 0 && !appended) {
        /* Rewritten as it is: a write after the replayed ones, for the WAIT after the call. */
        RedisModuleCallReply *r = RedisModule_Call(ctx, "PEXPIRETIME", "s", keys[1]);
        if (failed(ctx, r)) return REDISMODULE_OK;
        if (failed(ctx, RedisModule_Call(ctx, "PEXPIREAT", "!sl", keys[1], RedisModule_CallReplyInteger(r)))) return REDISMODULE_OK;
    }

    char *out = RedisModule_PoolAlloc(ctx, (size_t)n * RESULT_ENTRY);
    for (int i = 0; i < n; i++) {
        char *p = out + i * RESULT_ENTRY;
        p[0] = (char)codes[i];
        put64(p + 1, (uint64_t)versions[i]);
        put64(p + 9, (uint64_t)revs[i]);
    }
    RedisModule_ReplyWithArray(ctx, 4);
    RedisModule_ReplyWithLongLong(ctx, rev);
    RedisModule_ReplyWithLongLong(ctx, replayed);
    RedisModule_ReplyWithLongLong(ctx, unrecorded);
    RedisModule_ReplyWithStringBuffer(ctx, out, (size_t)n * RESULT_ENTRY);
    return REDISMODULE_OK;
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv, (void)argc;
    if (RedisModule_Init(ctx, "putallkv", 1, REDISMODULE_APIVER_1) == REDISMODULE_ERR) return REDISMODULE_ERR;
    return RedisModule_CreateCommand(ctx, "putall.apply", apply, "write deny-oom getkeys-api", 0, 0, 0);
}
