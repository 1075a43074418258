//! Raw SQL on a test database, the same call on both back ends (sqlx's `Any` driver):
//! for tests that edit rows behind the store's back, count rows, or search every row.

use sqlx::{AnyPool, Row};

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"))
}

/// Runs one statement on the database at `url`; the number of rows it changed.
pub async fn execute(url: &str, sql: &str) -> u64 {
    let pool = pool(url).await;
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    done.rows_affected()
}

/// The integer that `sql` (one `$1` parameter, bound to `param`) selects, e.g. a count.
pub async fn scalar(url: &str, sql: &str, param: &str) -> i64 {
    let pool = pool(url).await;
    let value = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(param.to_owned())
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .try_get::<i64, _>(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
    value
}

/// Every value in every row of every table of the database at `url`, as text: one line
/// per row, `table: ..` (for searching a dump for what must not be stored).
pub async fn dump(url: &str) -> String {
    let mut all = String::new();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await
                .unwrap();
        for t in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
                .fetch_all(&pool)
                .await
                .unwrap();
            for row in rows {
                all.push_str(&t);
                all.push(':');
                for (i, col) in sqlx::Row::columns(&row).iter().enumerate() {
                    let text = sqlite_text(&row, i);
                    all.push_str(&format!(" {}={text}", sqlx::Column::name(col)));
                }
                all.push('\n');
            }
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM \"{t}\" t"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            for r in rows {
                all.push_str(&format!("{t}: {r}\n"));
            }
        }
        pool.close().await;
    }
    all
}

/// A SQLite value as text, whatever its storage class.
fn sqlite_text(row: &sqlx::sqlite::SqliteRow, i: usize) -> String {
    row.try_get::<Option<String>, _>(i)
        .map(|v| v.unwrap_or_default())
        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
        .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
        .or_else(|_| {
            row.try_get::<Option<Vec<u8>>, _>(i)
                .map(|v| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned())
        })
        .unwrap_or_default()
}
