//! Keyset pagination shared by every list query: a page of items and an opaque cursor.
//!
//! A cursor is the sort key and id of the last row of a page, base64url-encoded (no
//! padding) so that clients treat it as opaque. The next page is every row strictly
//! after it in the list's order (`(sort_key, id) < (cursor.sort_key, cursor.id)` for a
//! newest-first list), so rows inserted meanwhile never shift or repeat a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// The fewest items a page may ask for.
pub const MIN_LIMIT: u32 = 1;
/// The most items a page may ask for.
pub const MAX_LIMIT: u32 = 100;
/// The page size when the client gives none.
pub const DEFAULT_LIMIT: u32 = 50;

/// Separates the sort key from the id inside a cursor. Ids (UUIDs) never contain it, so
/// the last one splits unambiguously.
const SEPARATOR: char = '|';
/// Versions the cursor format, so that a later change can refuse old cursors cleanly.
const VERSION: &str = "v1";

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` (JSON `null`) on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only tells that
    /// another page exists, and the cursor points at the last row kept.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|last| cursor_of(last).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// Where a page ends: the sort key and id of its last row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The value the list is sorted by (e.g. `created_at` as stored).
    pub sort_key: String,
    /// The row's id, the tie-breaker.
    pub id: String,
}

/// A cursor that this service did not make (or no longer understands).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct BadCursor;

impl Cursor {
    /// A cursor at `sort_key`, `id`.
    pub fn new(sort_key: impl Into<String>, id: impl Into<String>) -> Self {
        Cursor {
            sort_key: sort_key.into(),
            id: id.into(),
        }
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{VERSION}{SEPARATOR}{}{SEPARATOR}{}",
            self.sort_key, self.id
        ))
    }

    /// Reads a cursor made by [`Cursor::encode`]. Callers should still check that the
    /// parts parse as what their list sorts by.
    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        // Cursors are short; refuse anything large before decoding it.
        if text.is_empty() || text.len() > 512 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let rest = text
            .strip_prefix(VERSION)
            .and_then(|r| r.strip_prefix(SEPARATOR))
            .ok_or(BadCursor)?;
        let (sort_key, id) = rest.rsplit_once(SEPARATOR).ok_or(BadCursor)?;
        if sort_key.is_empty() || id.is_empty() {
            return Err(BadCursor);
        }
        Ok(Cursor::new(sort_key, id))
    }
}

/// Why a read-model query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The cursor was not made by this service, or not for this list (a client error:
    /// 422 naming `cursor`).
    #[error("invalid cursor")]
    BadCursor,
    /// The page size is outside [`MIN_LIMIT`]..=[`MAX_LIMIT`] (a client error: 422 naming
    /// `limit`; the API validates it first).
    #[error("limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {0}")]
    BadLimit(u32),
    /// A time range that is empty or reversed (a client error: 422 naming `to`).
    #[error("{0}")]
    BadRange(String),
    /// A series range of more buckets than one query may return (a client error: 422
    /// naming `from`).
    #[error("the range holds {buckets} buckets; at most {max} may be asked for at once")]
    TooManyBuckets {
        /// Buckets in the range asked for.
        buckets: i64,
        /// The most allowed.
        max: i64,
    },
    /// The read-model database failed (500 or 503).
    #[error("read-model database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored row could not be read back: the read model is corrupt and needs a
    /// rebuild (500).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What could not be read.
        reason: String,
    },
}

impl From<BadCursor> for QueryError {
    fn from(_: BadCursor) -> Self {
        QueryError::BadCursor
    }
}

/// Checks a requested page size against [`MIN_LIMIT`]..=[`MAX_LIMIT`].
pub fn valid_limit(limit: u32) -> bool {
    (MIN_LIMIT..=MAX_LIMIT).contains(&limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_round_trip_a_cursor() {
        let cursor = Cursor::new(
            "2026-01-02T03:04:05.123456Z",
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        );
        let text = cursor.encode();
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text), Ok(cursor));
    }

    #[test]
    fn it_should_refuse_a_cursor_it_did_not_make() {
        for bad in [
            "",
            "!!!",
            "bm9wZQ",                               // "nope"
            &URL_SAFE_NO_PAD.encode("v2|a|b"),      // another version
            &URL_SAFE_NO_PAD.encode("v1|only-one"), // no id
            &URL_SAFE_NO_PAD.encode("v1||id"),      // empty sort key
            &URL_SAFE_NO_PAD.encode([0xff, 0xfe]),  // not UTF-8
            &"A".repeat(600),
        ] {
            assert_eq!(Cursor::decode(bad), Err(BadCursor), "{bad}");
        }
    }

    #[test]
    fn it_should_point_the_cursor_at_the_last_item_kept() {
        let page = Page::from_overfetch(vec![1, 2, 3, 4], 3, |n| Cursor::new("k", n.to_string()));
        assert_eq!(page.items, [1, 2, 3]);
        let cursor = Cursor::decode(page.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(cursor.id, "3");

        let last = Page::from_overfetch(vec![1, 2, 3], 3, |n| Cursor::new("k", n.to_string()));
        assert_eq!(last.items, [1, 2, 3]);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn it_should_serialize_the_last_page_cursor_as_null() {
        let page: Page<u8> = Page {
            items: vec![],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            serde_json::json!({"items": [], "next_cursor": null})
        );
    }

    #[test]
    fn it_should_accept_limits_from_1_to_100() {
        assert!(!valid_limit(0));
        assert!(valid_limit(1));
        assert!(valid_limit(100));
        assert!(!valid_limit(101));
    }
}
