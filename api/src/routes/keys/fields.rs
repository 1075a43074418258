//! The fields create and change share, parsed into the domain's value objects; each
//! invalid one is pushed to `errors` naming the field (the request is a 422 listing them
//! all).

use chrono::{DateTime, Utc};
use domain::scope::{Scope, Scopes, check_custom_name};
use domain::values::{AllowedIps, Expiry, KeyName};

use crate::http::error::FieldError;

/// Catalogue scopes, and custom scopes this node knows (see [`super::learn_scopes`]); the
/// domain then checks that the custom ones are the organisation's.
pub(super) fn parse_scopes(
    field: &str,
    names: &[String],
    errors: &mut Vec<FieldError>,
) -> Option<Scopes> {
    let mut scopes = Scopes::new();
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        match Scope::lookup(name) {
            Some(s) => {
                scopes.insert(s);
            }
            None => {
                ok = false;
                let why = match check_custom_name(name) {
                    Ok(()) => format!("the scope {name} is not declared in this organization"),
                    Err(_) => format!("unknown scope {name:?}"),
                };
                errors.push(FieldError::new(format!("{field}[{i}]"), why));
            }
        }
    }
    ok.then_some(scopes)
}

pub(super) fn parse_ips(
    field: &str,
    entries: &[String],
    errors: &mut Vec<FieldError>,
) -> Option<AllowedIps> {
    let mut ok = true;
    for (i, entry) in entries.iter().enumerate() {
        if let Err(e) = domain::values::Cidr::parse(entry) {
            ok = false;
            errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string()));
        }
    }
    if !ok {
        return None;
    }
    match AllowedIps::parse(entries.iter()) {
        Ok(ips) => Some(ips),
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    }
}

pub(super) fn parse_name(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<KeyName> {
    KeyName::parse(raw)
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

pub(super) fn parse_expiry(
    at: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    Expiry::parse(at, Utc::now())
        .map(Expiry::at)
        .map_err(|e| errors.push(e.into()))
        .ok()
}
