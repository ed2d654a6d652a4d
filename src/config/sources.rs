//! Where each key's value came from: the layer that set it last. [`super::layers`] records one
//! entry per key a layer sets (a few pushes at start, nothing per request); `openhqm
//! check-config` prints them next to the effective values ([`super::render`]).

use std::fmt;

/// The layer that gave a key its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No layer set it: the key table's default.
    Default,
    /// The `--config` file.
    File,
    /// This `OPENHQM_*` environment variable.
    Env(String),
    /// This command-line flag, as given (`--port` or `--server.port`).
    Flag(String),
    /// Decided from another key (`queue.type` from `queue.redis_url`); names that key.
    Inferred(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Inferred(from) => write!(f, "inferred from {from}"),
        }
    }
}

/// The keys the layers set, in the order they were applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(Vec<(String, Source)>);

impl Sources {
    /// Records that `source` set `key` (dotted; endpoint names are folded to lower case, as
    /// [`super::Config::set`] folds them).
    pub(super) fn record(&mut self, key: &str, source: Source) {
        self.0.push((key.to_ascii_lowercase(), source));
    }

    /// Whether any layer set `key`.
    pub(super) fn given(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The layer that set `key` last; [`Source::Default`] when none did.
    pub fn of(&self, key: &str) -> &Source {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or(&Source::Default, |(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_layer_wins_and_names_are_folded() {
        let mut s = Sources::default();
        s.record("server.port", Source::File);
        s.record("server.port", Source::Env("OPENHQM_SERVER__PORT".into()));
        s.record("proxy.endpoints.Billing.url", Source::Flag("--x".into()));
        assert_eq!(s.of("server.port").to_string(), "env OPENHQM_SERVER__PORT");
        assert_eq!(s.of("proxy.endpoints.billing.url").to_string(), "flag --x");
        assert_eq!(s.of("server.host"), &Source::Default);
        assert!(s.given("server.port") && !s.given("server.host"));
    }
}
