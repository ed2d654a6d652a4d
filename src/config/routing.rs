//! `routing.routes`: rules that pick a job's processor from its submit body, highest priority
//! first (ties in file order). Given in the TOML file as `[[routing.routes]]` tables (or as a
//! JSON list in `OPENHQM_ROUTING__ROUTES`).

use serde::Deserialize;

use super::ConfigError;

/// One route as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs and errors.
    pub name: String,
    /// Dot path into the submit body (`metadata.tenant`, `payload.kind`); `headers.X` matches the
    /// request's `headers` case-insensitively.
    pub match_field: String,
    /// Matches when the field equals this (strings by value, other JSON values by their text).
    #[serde(default)]
    pub match_value: Option<String>,
    /// Matches when the field matches this regular expression.
    #[serde(default)]
    pub match_pattern: Option<String>,
    /// Higher first.
    #[serde(default)]
    pub priority: i64,
    /// The endpoint or registered processor the matching jobs run.
    pub endpoint: String,
    /// The upstream method for matching jobs (proxy endpoints), unless the job names one.
    #[serde(default)]
    pub method: Option<String>,
}

/// Sets `routing.routes` from a JSON list of route objects.
pub(super) fn set(routes: &mut Vec<RouteConfig>, name: &str, v: &str) -> Result<(), ConfigError> {
    if name != "routing.routes" {
        return Err(ConfigError(format!("unknown configuration key {name:?}")));
    }
    let parsed: Vec<RouteConfig> =
        serde_json::from_str(v).map_err(|e| ConfigError(format!("routing.routes: {e}")))?;
    for (i, r) in parsed.iter().enumerate() {
        let key = |k: &str| format!("routing.routes[{i}].{k}");
        if r.match_value.is_some() == r.match_pattern.is_some() {
            return Err(ConfigError(format!(
                "{}: give exactly one of match_value and match_pattern",
                key("match_value")
            )));
        }
        if let Some(p) = &r.match_pattern {
            regex::Regex::new(p)
                .map_err(|e| ConfigError(format!("{}: {e}", key("match_pattern"))))?;
        }
        if r.method
            .as_deref()
            .is_some_and(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(ConfigError(format!("{}: an HTTP method", key("method"))));
        }
        if r.match_field.is_empty() || r.match_field.split('.').any(str::is_empty) {
            return Err(ConfigError(format!("{}: a dot path", key("match_field"))));
        }
    }
    *routes = parsed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_bad_ones_name_the_key() {
        let mut r = Vec::new();
        set(
            &mut r,
            "routing.routes",
            r#"[{"name":"eu","match_field":"metadata.tenant","match_value":"eu","priority":10,"endpoint":"billing"}]"#,
        )
        .unwrap();
        assert_eq!(r[0].priority, 10);
        for (bad, key) in [
            (
                r#"[{"name":"a","match_field":"x","endpoint":"b"}]"#,
                "routing.routes[0].match_value",
            ),
            (
                r#"[{"name":"a","match_field":"x","match_pattern":"(","endpoint":"b"}]"#,
                "routing.routes[0].match_pattern",
            ),
            (
                r#"[{"name":"a","match_field":"x..y","match_value":"1","endpoint":"b"}]"#,
                "routing.routes[0].match_field",
            ),
            (r#"[{"name":"a","nope":1}]"#, "routing.routes"),
        ] {
            let e = set(&mut r, "routing.routes", bad).unwrap_err();
            assert!(e.0.contains(key), "{bad}: {e}");
        }
    }
}
