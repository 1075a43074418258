//! A bare axum route, the baseline of the hot-path benchmark: `bare ADDR` serves
//! `GET /` with a fixed body and nothing else (no layers, no state); any other path gets
//! the same answer (the gateway benchmark's upstream).

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .fallback(|| async { "ok" });
    axum::serve(listener, app).await?;
    Ok(())
}
