//! Routing: the first route (highest priority, then file order) whose field matches picks the
//! processor a submitted job runs, before `metadata.endpoint` and the default. Fields are dot
//! paths into the submit body; `headers.X` reads the request's `headers` with X matched
//! case-insensitively.

use serde_json::Value;

use crate::config::routing::RouteConfig;

enum Matcher {
    Value(String),
    Pattern(regex::Regex),
}

struct Rule {
    field: Vec<String>,
    matcher: Matcher,
    endpoint: String,
    method: Option<String>,
}

/// The routes of a broker, in the order they are tried.
#[derive(Default)]
pub struct Routes {
    rules: Vec<Rule>,
}

/// A body the routes cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unroutable;

/// What a matching route says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed<'a> {
    /// The processor (endpoint) to run.
    pub endpoint: &'a str,
    /// The upstream method, if the route names one.
    pub method: Option<&'a str>,
}

impl Routes {
    /// Compiles `routes` (validated when the configuration was loaded).
    pub fn new(routes: &[RouteConfig]) -> Routes {
        let mut ordered: Vec<(usize, &RouteConfig)> = routes.iter().enumerate().collect();
        ordered.sort_by_key(|(i, r)| (std::cmp::Reverse(r.priority), *i));
        let rules = ordered
            .into_iter()
            .filter_map(|(_, r)| {
                let matcher = match (&r.match_value, &r.match_pattern) {
                    (Some(v), _) => Matcher::Value(v.clone()),
                    (None, Some(p)) => Matcher::Pattern(regex::Regex::new(p).ok()?),
                    (None, None) => return None,
                };
                Some(Rule {
                    field: r.match_field.split('.').map(str::to_owned).collect(),
                    matcher,
                    endpoint: r.endpoint.clone(),
                    method: r.method.as_deref().map(str::to_ascii_uppercase),
                })
            })
            .collect();
        Routes { rules }
    }

    /// The route a submit body matches, if any. The body is read only when there are routes;
    /// `Err` when it cannot be read for routing (a body submit accepted, nested deeper than
    /// serde_json's limit): never routed silently elsewhere.
    pub fn pick(&self, body: &[u8]) -> Result<Option<Routed<'_>>, Unroutable> {
        if self.rules.is_empty() {
            return Ok(None);
        }
        let doc: Value = serde_json::from_slice(body).map_err(|_| Unroutable)?;
        Ok(self.rules.iter().find_map(|r| {
            let text = field_text(&doc, &r.field)?;
            let hit = match &r.matcher {
                Matcher::Value(v) => *v == text,
                Matcher::Pattern(p) => p.is_match(&text),
            };
            hit.then_some(Routed {
                endpoint: &r.endpoint,
                method: r.method.as_deref(),
            })
        }))
    }
}

/// The value at `path` as text: a string's value, any other value's JSON text.
fn field_text(doc: &Value, path: &[String]) -> Option<String> {
    let mut v = doc;
    for (i, part) in path.iter().enumerate() {
        let obj = v.as_object()?;
        v = if i == 1 && path[0] == "headers" {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)?
        } else {
            obj.get(part)?
        };
    }
    Some(match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, field: &str, value: Option<&str>, pattern: Option<&str>, prio: i64) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            match_field: field.into(),
            match_value: value.map(Into::into),
            match_pattern: pattern.map(Into::into),
            priority: prio,
            endpoint: name.into(),
            method: (name == "eu").then(|| "PUT".into()),
        }
    }

    #[test]
    fn first_match_by_priority_then_order() {
        let routes = Routes::new(&[
            route("any-tenant", "metadata.tenant", None, Some("^e"), 0),
            route("eu", "metadata.tenant", Some("eu"), None, 10),
            route("big", "payload.size", Some("3"), None, 0),
            route("tenant-header", "headers.x-tenant", Some("t1"), None, 0),
        ]);
        let pick =
            |body: &str| routes.pick(body.as_bytes()).unwrap().map(|r| (r.endpoint, r.method));
        assert_eq!(
            pick(r#"{"payload":{},"metadata":{"tenant":"eu"}}"#),
            Some(("eu", Some("PUT")))
        );
        assert_eq!(
            pick(r#"{"payload":{},"metadata":{"tenant":"es"}}"#),
            Some(("any-tenant", None))
        );
        assert_eq!(pick(r#"{"payload":{"size":3}}"#), Some(("big", None)));
        assert_eq!(
            pick(r#"{"payload":{},"headers":{"X-Tenant":"t1"}}"#),
            Some(("tenant-header", None))
        );
        assert_eq!(pick(r#"{"payload":{"size":"4"}}"#), None);
        assert_eq!(Routes::default().pick(b"{}"), Ok(None));
        assert!(routes.pick(b"{").is_err());
    }
}
