//! The gateway's route rules: which scope a call to a protected service needs, read from
//! the TOML file named by `KEYLEDGER_GATEWAY_ROUTES`:
//!
//! ```toml
//! [[route]]
//! method = "GET"            # or "*" for any method
//! path = "/invoices/*"      # `*` or `{name}`: one segment; a last `**`: any rest
//! scope = "work-orders:read"
//! ```
//!
//! The first rule that matches the call's method and path (its query left out) wins; a
//! call no rule matches is refused (403). Read once at start-up: a file that does not
//! parse, or names an unknown scope, stops the binary with the rule's number.

use std::path::Path;

use domain::scope::Scope;
use serde::Deserialize;

/// The rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct GatewayRules {
    rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Upper-case method, or `None` for any.
    pub method: Option<String>,
    /// The pattern as written: it is also the route recorded in the key's usage.
    pub pattern: String,
    segments: Vec<Segment>,
    /// The scope a key needs.
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    One,
    Rest,
}

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("KEYLEDGER_GATEWAY_ROUTES: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("KEYLEDGER_GATEWAY_ROUTES: {0}")]
    Parse(String),
    #[error("KEYLEDGER_GATEWAY_ROUTES: rule {index}: {message}")]
    Rule { index: usize, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    route: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    method: String,
    path: String,
    scope: String,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

impl GatewayRules {
    /// Reads the rule file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses rules from TOML text.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))?;
        let rules = file
            .route
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                Rule::new(raw).map_err(|message| RulesError::Rule {
                    index: i + 1,
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The first rule for `method` and `path` (a query string is ignored).
    pub fn matching(&self, method: &str, path: &str) -> Option<&Rule> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        self.rules.iter().find(|rule| {
            rule.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && rule.matches(&parts)
        })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none (every gateway call is then refused).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Rule {
    fn new(raw: RawRule) -> Result<Self, String> {
        let method = match raw.method.trim() {
            "*" => None,
            m if METHODS.contains(&m.to_ascii_uppercase().as_str()) => Some(m.to_ascii_uppercase()),
            m => return Err(format!("method {m:?} is not an HTTP method or \"*\"")),
        };
        if !raw.path.starts_with('/') {
            return Err(format!("path {:?} must start with '/'", raw.path));
        }
        let parts: Vec<&str> = raw.path.split('/').filter(|p| !p.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("path {:?}: `**` must be last", raw.path)),
                "*" => Segment::One,
                p if p.starts_with('{') && p.ends_with('}') => Segment::One,
                p => Segment::Exact(p.to_owned()),
            });
        }
        // A catalogue scope, or a custom one (the organisations declare it; the rule names
        // it ahead of them, so it is declared here too).
        let name = raw.scope.trim();
        let scope = Scope::parse(name)
            .or_else(|_| Scope::declare(name))
            .map_err(|e| e.to_string())?;
        Ok(Rule {
            method,
            pattern: raw.path,
            segments,
            scope,
        })
    }

    fn matches(&self, parts: &[&str]) -> bool {
        let mut parts = parts.iter();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Exact(want) => {
                    if parts.next() != Some(&want.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
        [[route]]
        method = "GET"
        path = "/invoices/*"
        scope = "work-orders:read"

        [[route]]
        method = "post"
        path = "/invoices"
        scope = "work-orders:write"

        [[route]]
        method = "*"
        path = "/assets/{id}/files/**"
        scope = "assets:read"
    "#;

    #[test]
    fn it_should_pick_the_first_rule_matching_method_and_path() {
        let rules = GatewayRules::parse(RULES).unwrap();
        assert_eq!(rules.len(), 3);
        let get = rules.matching("GET", "/invoices/42?expand=lines").unwrap();
        assert_eq!(
            (get.pattern.as_str(), get.scope),
            ("/invoices/*", Scope::WORK_ORDERS_READ)
        );
        assert_eq!(
            rules.matching("POST", "/invoices").unwrap().scope,
            Scope::WORK_ORDERS_WRITE
        );
        assert_eq!(
            rules
                .matching("DELETE", "/assets/7/files/a/b.pdf")
                .unwrap()
                .scope,
            Scope::ASSETS_READ
        );
        assert!(rules.matching("GET", "/assets/7/files").is_some());
    }

    #[test]
    fn it_should_match_no_rule_for_another_method_depth_or_path() {
        let rules = GatewayRules::parse(RULES).unwrap();
        assert!(rules.matching("DELETE", "/invoices/42").is_none());
        assert!(rules.matching("GET", "/invoices/42/lines").is_none());
        assert!(rules.matching("GET", "/invoices").is_none());
        assert!(rules.matching("GET", "/payments/1").is_none());
        assert!(GatewayRules::default().matching("GET", "/").is_none());
    }

    #[test]
    fn it_should_name_the_rule_that_cannot_be_used() {
        for (bad, needle) in [
            (
                r#"[[route]]
method = "GET"
path = "/x"
scope = "Billing read""#,
                "not a scope name",
            ),
            (
                r#"[[route]]
method = "FETCH"
path = "/x"
scope = "assets:read""#,
                "not an HTTP method",
            ),
            (
                r#"[[route]]
method = "GET"
path = "x"
scope = "assets:read""#,
                "must start with",
            ),
            (
                r#"[[route]]
method = "GET"
path = "/**/x"
scope = "assets:read""#,
                "must be last",
            ),
        ] {
            let err = GatewayRules::parse(bad).unwrap_err().to_string();
            assert!(err.contains("rule 1") && err.contains(needle), "{err}");
        }
        assert!(matches!(
            GatewayRules::parse("route = 3"),
            Err(RulesError::Parse(_))
        ));
    }
}
