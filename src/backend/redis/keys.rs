//! Key names. Every key of one shard carries the shard's hash tag (`{3}`), so one shard's
//! transactions touch one Redis Cluster slot. A reader finds an id's keys from `shard_for`, so
//! every broker instance on one Redis must run the same `server.shards` (docs/redis.md).

use crate::id::{CorrelationId, ShardId};

/// The keys of one shard.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The work stream, `openhqm-requests:{3}`.
    pub stream: Vec<u8>,
    /// The dead-letter stream, `openhqm-dlq:{3}`.
    pub dlq: Vec<u8>,
    /// Hash from correlation id to its entry in the dead-letter stream, `openhqm-dlq:{3}:index`.
    pub dlq_index: Vec<u8>,
    /// Sorted set of ids waiting for a retry, scored by due time (ms).
    pub retries: Vec<u8>,
    /// Prefix of the hashes holding jobs waiting for a retry.
    pub retry_job_prefix: Vec<u8>,
    /// Prefix of the request-state keys.
    pub state_prefix: Vec<u8>,
    /// The Pub/Sub channel the ids of requests made final are published on (16 bytes each,
    /// back to back), so waiters on other instances wake.
    pub finals_channel: Vec<u8>,
}

impl Keys {
    /// The keys of `shard` for the configured stream prefixes.
    pub fn new(requests: &str, dlq: &str, shard: ShardId) -> Keys {
        let tag = format!("{{{shard}}}");
        Keys {
            stream: format!("{requests}:{tag}").into_bytes(),
            dlq: format!("{dlq}:{tag}").into_bytes(),
            dlq_index: format!("{dlq}:{tag}:index").into_bytes(),
            retries: format!("{requests}:{tag}:retries").into_bytes(),
            retry_job_prefix: format!("{requests}:{tag}:retry:").into_bytes(),
            state_prefix: format!("{requests}:{tag}:state:").into_bytes(),
            finals_channel: format!("{requests}:{tag}:finals").into_bytes(),
        }
    }

    /// The state key of `id` (an id this shard owns).
    pub fn state(&self, id: &CorrelationId) -> Vec<u8> {
        let mut k = self.state_prefix.clone();
        k.extend_from_slice(&id.to_text());
        k
    }

    /// The key recording idempotency key `key` (owned by this shard).
    pub fn idempotency(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.state_prefix.clone();
        k.truncate(k.len() - b"state:".len());
        k.extend_from_slice(b"idem:");
        k.extend_from_slice(key);
        k
    }

    /// The hash holding `id`'s job while it waits for a retry.
    pub fn retry_job(&self, id: &CorrelationId) -> Vec<u8> {
        let mut k = self.retry_job_prefix.clone();
        k.extend_from_slice(&id.to_text());
        k
    }
}

/// The state key of `id` owned by shard `owner`, from any shard.
pub fn state_key(requests_prefix: &str, owner: ShardId, id: &CorrelationId) -> Vec<u8> {
    let mut k = format!("{requests_prefix}:{{{owner}}}:state:").into_bytes();
    k.extend_from_slice(&id.to_text());
    k
}

/// The consumer group every instance's workers join.
pub const GROUP: &[u8] = b"openhqm-workers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_shard_hash_tag() {
        let k = Keys::new("openhqm-requests", "openhqm-dlq", 3);
        let id = CorrelationId::parse(b"550e8400-e29b-41d4-a716-446655440000").unwrap();
        assert_eq!(k.stream, b"openhqm-requests:{3}");
        assert_eq!(k.dlq, b"openhqm-dlq:{3}");
        assert_eq!(
            k.state(&id),
            b"openhqm-requests:{3}:state:550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(
            k.retry_job(&id),
            b"openhqm-requests:{3}:retry:550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(state_key("openhqm-requests", 3, &id), k.state(&id));
        for key in [&k.stream, &k.dlq, &k.retries, &k.state(&id)] {
            let s = String::from_utf8_lossy(key);
            assert!(s.contains("{3}"), "{s}");
        }
    }
}
