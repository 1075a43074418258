//! `keyledger orgs list`: every organisation with its plan and number of active keys,
//! from the read models (brought up to the store's head first, no server needed).

use projections::{OrgQueries, OrgSummary};

use super::catch_up;
use crate::config::StoreConfig;
use crate::wiring::open_stores;

/// Prints the organisations, oldest first: a table, or a JSON array of
/// `{id, name, plan, created_at, version, integrity, active_keys}`.
pub async fn list(stores: &StoreConfig, json: bool) -> anyhow::Result<()> {
    let opened = open_stores(stores).await?;
    catch_up(&opened).await?;
    let orgs = OrgQueries::new(opened.read_db.clone())
        .list_with_active_keys(chrono::Utc::now())
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&orgs)?);
    } else {
        print!("{}", table(&orgs));
    }
    Ok(())
}

fn table(orgs: &[OrgSummary]) -> String {
    let mut out = format!(
        "{:<36}  {:<12}  {:>11}  NAME\n",
        "ID", "PLAN", "ACTIVE KEYS"
    );
    for o in orgs {
        out.push_str(&format!(
            "{:<36}  {:<12}  {:>11}  {}\n",
            o.org.id, o.org.plan, o.active_keys, o.org.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use projections::OrgRow;

    use super::*;

    #[test]
    fn the_table_has_a_header_and_a_row_per_organisation() {
        let org = OrgSummary {
            org: OrgRow {
                id: "00000000-0000-7000-8000-000000000001".into(),
                name: "default".into(),
                plan: "enterprise".into(),
                created_at: "2026-01-01T00:00:00.000000Z".into(),
                version: 1,
                integrity: "intact".into(),
            },
            active_keys: 3,
        };
        let text = table(&[org]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("ID")
                && lines[0].contains("PLAN")
                && lines[0].contains("ACTIVE KEYS")
        );
        assert!(lines[1].starts_with("00000000-0000-7000-8000-000000000001"));
        assert!(lines[1].contains("enterprise") && lines[1].ends_with("default"));
        assert!(lines[1].contains("  3  "), "{}", lines[1]);
    }
}
