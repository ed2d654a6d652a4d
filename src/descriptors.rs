//! The process's file-descriptor budget. Every connection takes a descriptor, and so do the
//! shards' Redis connections and upstream pools: if clients could take them all, Redis could not
//! reconnect and proxy calls could not connect. At start the soft `RLIMIT_NOFILE` is raised
//! toward what `server.max_connections` on every shard plus that reserve needs (up to the hard
//! limit), and when it still falls short the connection limit per shard is lowered to what fits.

use tracing::warn;

use crate::config::Config;

/// Descriptors the process holds whatever the load: stdio, listeners, event loops, the mesh's
/// wake-ups, the resolver thread, log output.
const PROCESS_RESERVE: u64 = 64;
/// Per shard: its Redis connections (commands, subscriber, checks), with room to reconnect.
const REDIS_PER_SHARD: u64 = 8;
/// Per shard: connections accepted only to be told 503 (over the limit) and closed.
const REJECTS_PER_SHARD: u64 = 16;

/// What the budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Connections each shard may hold.
    pub max_connections: usize,
    /// The soft limit now in force.
    pub nofile: u64,
}

/// Descriptors kept back for everything but client connections, over all shards.
pub fn reserve(config: &Config) -> u64 {
    let shards = config.nr_shards() as u64;
    let upstream: u64 = if config.proxy.enabled {
        config
            .proxy
            .endpoints
            .values()
            .map(|e| e.max_connections as u64)
            .sum()
    } else {
        0
    };
    PROCESS_RESERVE + shards * (REDIS_PER_SHARD + REJECTS_PER_SHARD + upstream)
}

/// The connection limit per shard that `(soft, hard)` descriptors allow for `config`, and the
/// soft limit to ask for. Pure: [`apply`] does the system calls.
pub fn plan(config: &Config, soft: u64, hard: u64) -> Budget {
    let shards = config.nr_shards() as u64;
    let reserve = reserve(config);
    let wanted = reserve + shards * config.server.max_connections as u64;
    let nofile = if soft >= wanted {
        soft
    } else {
        wanted.min(hard).max(soft)
    };
    let fits = nofile.saturating_sub(reserve) / shards.max(1);
    Budget {
        max_connections: (config.server.max_connections as u64).min(fits).max(1) as usize,
        nofile,
    }
}

/// Raises the soft descriptor limit as far as `config` needs (and the hard limit allows) and
/// returns the connection limit per shard that fits, warning when it is lower than configured.
pub fn apply(config: &Config) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return config.server.max_connections;
    }
    let budget = plan(config, lim.rlim_cur, lim.rlim_max);
    let mut nofile = lim.rlim_cur;
    if budget.nofile > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: budget.nofile,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            nofile = budget.nofile;
        }
    }
    let budget = plan(config, nofile, nofile);
    if budget.max_connections < config.server.max_connections {
        warn!(
            nofile,
            reserved = reserve(config),
            configured = config.server.max_connections,
            effective = budget.max_connections,
            "the descriptor limit (RLIMIT_NOFILE) is too low for server.max_connections on every \
             shard: connections per shard are limited to what fits (raise LimitNOFILE / ulimit -n)"
        );
    }
    budget.max_connections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shards: usize, max: usize) -> Config {
        let mut c = Config::default();
        c.server.shards = Some(shards);
        c.server.max_connections = max;
        c
    }

    #[test]
    fn enough_descriptors_keep_the_configured_limit() {
        let c = config(2, 1000);
        let b = plan(&c, 1 << 20, 1 << 20);
        assert_eq!(b.max_connections, 1000);
        assert_eq!(b.nofile, 1 << 20);
    }

    #[test]
    fn the_soft_limit_is_raised_up_to_the_hard_one() {
        let c = config(2, 1000);
        let need = reserve(&c) + 2000;
        let b = plan(&c, 1024, 1 << 20);
        assert_eq!(b.nofile, need);
        assert_eq!(b.max_connections, 1000);
    }

    #[test]
    fn too_few_descriptors_lower_the_limit_and_keep_the_reserve() {
        let c = config(2, 10_000);
        let b = plan(&c, 256, 256);
        assert_eq!(b.nofile, 256);
        assert_eq!(b.max_connections as u64, (256 - reserve(&c)) / 2);
        assert!(b.max_connections as u64 * 2 + reserve(&c) <= 256);
        // Never below one connection, however small the limit.
        assert_eq!(plan(&c, 10, 10).max_connections, 1);
    }

    #[test]
    fn upstream_pools_are_reserved_in_proxy_mode() {
        let mut c = config(1, 10);
        let without = reserve(&c);
        c.proxy.enabled = true;
        c.set("proxy.endpoints.a.url", "http://127.0.0.1:1/").unwrap();
        c.set("proxy.endpoints.a.max_connections", "100").unwrap();
        assert_eq!(reserve(&c), without + 100);
    }
}
