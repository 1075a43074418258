//! The typed client over the HTTP API: one method per endpoint, called as one key of one
//! organisation ([`TestApp::api`]), each answering a [`Reply`]. Every body a typed call
//! receives is kept ([`TestApp::replies`]), so that a test can search all of them (for a
//! secret, say). Requests the methods do not cover (odd headers, raw bodies) go through
//! [`Api::request`] and [`Api::send`], which record them the same way.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::TestApp;

/// One answer: the status, the headers, and the body as text and as JSON (`null` when it
/// is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// A header's value (`""` when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// A string field of the JSON body (panics when it is missing or not a string).
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field:?} in {}", self.text))
    }
}

/// Calls made with one token (or none) on one organisation's routes.
pub struct Api<'a> {
    app: &'a TestApp,
    org: String,
    token: Option<String>,
}

impl TestApp {
    /// The API as the key `token` of organisation `org` sees it.
    pub fn api(&self, org: &str, token: &str) -> Api<'_> {
        Api {
            app: self,
            org: org.to_owned(),
            token: Some(token.to_owned()),
        }
    }

    /// `GET path` with `token`, for a path that names its organisation itself (or none).
    pub async fn get(&self, token: &str, path: &str) -> Reply {
        self.api("", token).get(path).await
    }

    /// The API of organisation `org` called without a key.
    pub fn anonymous(&self, org: &str) -> Api<'_> {
        Api {
            app: self,
            org: org.to_owned(),
            token: None,
        }
    }
}

impl Api<'_> {
    /// A request to `path` (from the server's root), with this caller's key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.app.client.request(method, self.app.url(path));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends `req` and records the body it answers with.
    pub async fn send(&self, req: RequestBuilder) -> Reply {
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        self.app.replies.lock().unwrap().push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    /// `method path`, with a JSON body when one is given.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let req = self.request(method, path);
        let req = match body {
            Some(body) => req.json(&body),
            None => req,
        };
        self.send(req).await
    }

    /// `/organizations/{org}/api-keys`.
    pub fn keys_path(&self) -> String {
        format!("/organizations/{}/api-keys", self.org)
    }

    /// `/organizations/{org}/api-keys/{id}`.
    pub fn key_path(&self, id: &str) -> String {
        format!("{}/{id}", self.keys_path())
    }

    /// `POST /organizations/{org}/api-keys`.
    pub async fn create_key(&self, body: Value) -> Reply {
        self.call(Method::POST, &self.keys_path(), Some(body)).await
    }

    /// Creates a key (201 asserted) and returns its body (with the secret).
    pub async fn new_key(&self, body: Value) -> Value {
        let created = self.create_key(body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.body
    }

    /// `GET /organizations/{org}/api-keys{query}` (`query` empty or from `?`).
    pub async fn list_keys(&self, query: &str) -> Reply {
        self.get(&format!("{}{query}", self.keys_path())).await
    }

    /// `GET /organizations/{org}/api-keys/{id}`.
    pub async fn get_key(&self, id: &str) -> Reply {
        self.get(&self.key_path(id)).await
    }

    /// `PATCH /organizations/{org}/api-keys/{id}`.
    pub async fn patch_key(&self, id: &str, body: Value) -> Reply {
        self.call(Method::PATCH, &self.key_path(id), Some(body))
            .await
    }

    /// `PATCH /organizations/{org}/api-keys/{id}` with `If-Match: etag`.
    pub async fn patch_key_if_match(&self, id: &str, etag: &str, body: Value) -> Reply {
        let req = self
            .request(Method::PATCH, &self.key_path(id))
            .header("if-match", etag)
            .json(&body);
        self.send(req).await
    }

    /// `DELETE /organizations/{org}/api-keys/{id}`.
    pub async fn delete_key(&self, id: &str) -> Reply {
        self.call(Method::DELETE, &self.key_path(id), None).await
    }

    /// `POST /organizations/{org}/api-keys/{id}/revoke`, with a body when one is given.
    pub async fn revoke_key(&self, id: &str, body: Option<Value>) -> Reply {
        let path = format!("{}/revoke", self.key_path(id));
        self.call(Method::POST, &path, body).await
    }

    /// `POST /organizations/{org}/api-keys/{id}/rotate`, with a body when one is given.
    pub async fn rotate_key(&self, id: &str, body: Option<Value>) -> Reply {
        let path = format!("{}/rotate", self.key_path(id));
        self.call(Method::POST, &path, body).await
    }

    /// `GET /organizations/{org}/api-keys/{id}/events{query}`.
    pub async fn key_events(&self, id: &str, query: &str) -> Reply {
        self.get(&format!("{}/events{query}", self.key_path(id)))
            .await
    }

    /// `GET /whoami`.
    pub async fn whoami(&self) -> Reply {
        self.get("/whoami").await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Reply {
        self.get("/openapi.json").await
    }
}
