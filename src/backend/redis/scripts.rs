//! The Lua scripts of the queue: the conditional forms of the steps that end a delivery, the
//! mover of due retries and the trimming of acknowledged entries (both every 100 ms per shard).
//!
//! A delivery is normally settled with a plain `MULTI/EXEC` (`mod.rs`): while this consumer's
//! lease on the entry is certainly held, no other consumer can have taken it over. When the lease
//! may have lapsed (the shard was frozen, Redis was unreachable past the renewals), the step runs
//! as one of these scripts instead, which settles **only if the entry is still in this consumer's
//! pending list**: a worker whose entry was taken over (and maybe already finished) by another
//! instance then writes nothing, so it cannot overwrite the outcome it no longer owns.
//! Scripts are not the hot path because an `EVALSHA` costs Redis more CPU than the same
//! commands in `MULTI/EXEC` (PERFORMANCE.md).
//!
//! Every key is passed in `KEYS` and carries the shard's hash tag. State values are encoded by
//! `state_value.rs`, job fields by `fields.rs`; the scripts pass both through unread.

use crate::resp::Script;

/// Returns 0 unless `ARGV[3]` (an entry) is in consumer `ARGV[2]`'s pending list of group
/// `ARGV[1]` on stream `KEYS[1]`; otherwise acknowledges it and goes on.
macro_rules! owner_only {
    ($rest:expr) => {
        concat!(
            "if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
",
            $rest,
            "
return 1"
        )
        .as_bytes()
    };
}

/// Reads this consumer's own pending entries after entry `ARGV[3]` (`0`: from the start), at
/// most `ARGV[4]`, without counting a delivery: each one's idle time is reset (`XCLAIM … JUSTID`,
/// which leaves the delivery count alone) and its body read. For a re-read after a lost reply,
/// whose entries the lost read already counted. The reply has `XREADGROUP`'s shape (a deleted
/// entry's body is nil). KEYS: stream. ARGV: group, consumer, after, count.
const READ_OWN_PENDING: &[u8] = b"local from = '-'
if ARGV[3] ~= '0' then from = '(' .. ARGV[3] end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], from, '+', tonumber(ARGV[4]), ARGV[2])
local out = {}
for i, e in ipairs(p) do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1], 'JUSTID')
  local r = redis.call('XRANGE', KEYS[1], e[1], e[1])
  if r[1] then out[i] = r[1] else out[i] = {e[1], false} end
end
return {{KEYS[1], out}}";

/// Processing: store the `PROCESSING` state, only if the entry is still this consumer's (never
/// acknowledges). KEYS: stream, state. ARGV: group, consumer, entry id, ttl, the state's value.
/// Returns 1 when written, 0 when the entry is no longer this consumer's.
const PROCESSING: &[u8] =
    b"if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
return 1";

/// Finish: store the final state. KEYS: stream, state. ARGV: group, consumer, entry id, ttl, then
/// the state's value (none: only acknowledge).
const FINISH: &[u8] =
    owner_only!("if #ARGV > 4 then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4]) end");

/// Retry later: park the job (a hash) in the retry set, due at a time, and record `PROCESSING` (a
/// waiting retry never moves back to `PENDING`). KEYS: stream, retry set, job hash, state.
/// ARGV: group, consumer, entry id, ttl, due (ms), correlation id, the `PROCESSING` state's
/// value, then the job's field/value args.
const RETRY: &[u8] = owner_only!(
    "redis.call('HSET', KEYS[3], unpack(ARGV, 8))
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[4])"
);

/// The dead-letter step after the acknowledgement: append the job to the dead-letter stream, index
/// the new entry by correlation id (for redrive and drop), and store the final state and publish
/// the id (16 bytes) on the shard's finals channel. KEYS: stream, dead-letter stream, state,
/// dead-letter index. ARGV: group, consumer, entry id, ttl, correlation id, its 16 bytes, the
/// finals channel, n, n dead-letter field/value args, then the state's value (none: no state
/// write, no publish).
macro_rules! dead_letter_body {
    () => {
        "local n = tonumber(ARGV[8])
local e = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 9, 8 + n))
redis.call('HSET', KEYS[4], ARGV[5], e)
if #ARGV > 8 + n then
  redis.call('SET', KEYS[3], ARGV[9 + n], 'EX', ARGV[4])
  redis.call('PUBLISH', ARGV[7], ARGV[6])
end"
    };
}

/// Dead-letter while the lease is certainly held (a script, not a transaction: the index needs
/// the new entry's id). Keys and arguments as `dead_letter_body`.
const DEAD_LETTER_HELD: &[u8] = concat!(
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
",
    dead_letter_body!(),
    "
return 1"
)
.as_bytes();

/// Dead-letter, owner only. Keys and arguments as `dead_letter_body`.
const DEAD_LETTER: &[u8] = owner_only!(dead_letter_body!());

/// Deletes dead letters older than entry id `ARGV[1]` (at most `ARGV[2]` per call) with their
/// index entries. KEYS: dead-letter stream, dead-letter index. Returns how many.
const EXPIRE_DEAD_LETTERS: &[u8] = b"local old = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1], 'COUNT', tonumber(ARGV[2]))
for _, e in ipairs(old) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'id' then
      if redis.call('HGET', KEYS[2], f[i + 1]) == e[1] then redis.call('HDEL', KEYS[2], f[i + 1]) end
      break
    end
  end
  redis.call('XDEL', KEYS[1], e[1])
end
return #old";

/// Redrive: if dead letter `ARGV[2]` is still the indexed entry of id `ARGV[1]`, delete it and
/// its index, append the job (`ARGV[5..]`, field/value args) to the work stream and store the
/// `PENDING` state `ARGV[3]` (no TTL, as every `PENDING`; `ARGV[4]` is unused). KEYS:
/// dead-letter stream, dead-letter index, stream, state. Returns 1, or 0 when it was no longer
/// there.
const REDRIVE: &[u8] = b"if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[4], ARGV[3])
return 1";

/// Drops the dead letter of id `ARGV[1]`. KEYS: dead-letter stream, dead-letter index. Returns
/// the number of entries deleted (0 when unknown).
const DROP_DEAD_LETTER: &[u8] = b"local e = redis.call('HGET', KEYS[2], ARGV[1])
if not e then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('XDEL', KEYS[1], e)";

/// Idempotent submit: unless idempotency key `KEYS[1]` is known, record it (`ARGV[1]`, TTL
/// `ARGV[2]`), append the job (`ARGV[4..]`, field/value args) to stream `KEYS[2]` and store its
/// `PENDING` state `ARGV[3]` at `KEYS[3]` (no TTL, as every `PENDING`), all in this one script. Returns the key's earlier
/// value when it was known (nothing written), else nil.
const SUBMIT_IDEMPOTENT: &[u8] = b"local prev = redis.call('GET', KEYS[1])
if prev then return prev end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[3], ARGV[3])
return false";

/// Cancel: if the state is still `ARGV[1]` (the `PENDING` value read before) and the job's entry
/// is among those group `ARGV[3]` has not delivered yet (after its last-delivered id), delete
/// the entry, store the `CANCELLED` state `ARGV[2]` (TTL `ARGV[5]`) and publish the id (`ARGV[7]`,
/// 16 bytes) on the finals channel `ARGV[6]`. The entry is found by its `id` field (`ARGV[4]`;
/// the first field of an entry the broker wrote), scanning at most `ARGV[8]` undelivered
/// entries: nothing on
/// the submit path names it. KEYS: state, stream. Returns 1 when cancelled, 0 when the entry is
/// not among the undelivered ones (a worker took it), -1 when the state changed meanwhile, -2
/// when the undelivered backlog is longer than the scan.
const CANCEL: &[u8] = b"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local last = '0-0'
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[2])
if ok then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[3] then last = f['last-delivered-id'] end
  end
end
local from = '(' .. last
local scanned = 0
while scanned < tonumber(ARGV[8]) do
  local batch = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', 500)
  if #batch == 0 then return 0 end
  for _, e in ipairs(batch) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'id' then
        if f[i + 1] == ARGV[4] then
          redis.call('XDEL', KEYS[2], e[1])
          redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
          redis.call('PUBLISH', ARGV[6], ARGV[7])
          return 1
        end
        break
      end
    end
  end
  scanned = scanned + #batch
  from = '(' .. batch[#batch][1]
end
return -2";

/// Moves due retries (ids in the sorted set, job fields in a hash) back onto the stream.
/// KEYS: retry set, stream. ARGV: now (ms), job-hash key prefix.
const MOVE_DUE_RETRIES: &[u8] =
    b"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  local k = ARGV[2] .. id
  local f = redis.call('HGETALL', k)
  if #f > 0 then redis.call('XADD', KEYS[2], '*', unpack(f)) end
  redis.call('DEL', k)
  redis.call('ZREM', KEYS[1], id)
end
return #ids";

/// Deletes the entries every consumer group of the stream has acknowledged: those before the
/// oldest pending entry, or, with none pending, up to the last delivered one. Entries still
/// pending or not yet delivered are never touched (unlike `MAXLEN`, which before Redis 8.2 deletes
/// pending entries). One call every 100 ms replaces an `XDEL` per request. KEYS: stream. Returns the number of entries deleted.
const TRIM_ACKNOWLEDGED: &[u8] = b"local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok or #groups == 0 then return 0 end
local bound_ms, bound_seq
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq
  if f['pending'] > 0 then
    ms, seq = parse(redis.call('XPENDING', KEYS[1], f['name'])[2])
  else
    ms, seq = parse(f['last-delivered-id'])
    seq = seq + 1
  end
  if bound_ms == nil or ms < bound_ms or (ms == bound_ms and seq < bound_seq) then
    bound_ms, bound_seq = ms, seq
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', bound_ms, bound_seq))";

/// The scripts, digested once per shard.
pub struct Scripts {
    /// See `READ_OWN_PENDING`.
    pub read_own_pending: Script,
    /// See `PROCESSING`.
    pub processing: Script,
    /// See `FINISH`.
    pub finish: Script,
    /// See `RETRY`.
    pub retry: Script,
    /// See `DEAD_LETTER`.
    pub dead_letter: Script,
    /// See `DEAD_LETTER_HELD`.
    pub dead_letter_held: Script,
    /// See `REDRIVE`.
    pub redrive: Script,
    /// See `EXPIRE_DEAD_LETTERS`.
    pub expire_dead_letters: Script,
    /// See `CANCEL`.
    pub cancel: Script,
    /// See `SUBMIT_IDEMPOTENT`.
    pub submit_idempotent: Script,
    /// See `DROP_DEAD_LETTER`.
    pub drop_dead_letter: Script,
    /// See `MOVE_DUE_RETRIES`.
    pub move_due_retries: Script,
    /// See `TRIM_ACKNOWLEDGED`.
    pub trim_acknowledged: Script,
}

impl Default for Scripts {
    fn default() -> Scripts {
        Scripts {
            read_own_pending: Script::new(READ_OWN_PENDING),
            processing: Script::new(PROCESSING),
            finish: Script::new(FINISH),
            retry: Script::new(RETRY),
            dead_letter: Script::new(DEAD_LETTER),
            dead_letter_held: Script::new(DEAD_LETTER_HELD),
            redrive: Script::new(REDRIVE),
            expire_dead_letters: Script::new(EXPIRE_DEAD_LETTERS),
            cancel: Script::new(CANCEL),
            submit_idempotent: Script::new(SUBMIT_IDEMPOTENT),
            drop_dead_letter: Script::new(DROP_DEAD_LETTER),
            move_due_retries: Script::new(MOVE_DUE_RETRIES),
            trim_acknowledged: Script::new(TRIM_ACKNOWLEDGED),
        }
    }
}
