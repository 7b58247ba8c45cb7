//! Search over messages (PROTOCOL §13): what a store is asked ([`SearchQuery`]: the text, the
//! rooms the caller may read, where the page starts), what it answers ([`Hit`]s, newest first),
//! the page cursor, and the in-memory backend's matching. Postgres answers with its full-text
//! search (`reads::search`, the `messages_search` index of V6); both find a message by its current
//! text (an edit by its new words, never by the old) and never a deleted one.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::serialize_ts;
use crate::ids::{RoomId, Seq, UserId};

/// One search: `text` as the user typed it (Postgres reads it as `websearch_to_tsquery`: words,
/// `"phrases"`, `or`, `-word`; syntax never fails), in `scope`, older than `before`.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    pub scope: RoomScope,
    pub before: Option<SearchCursor>,
    pub limit: usize,
}

/// The rooms a search may look in: the caller's now, as their token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomScope {
    All,
    /// These rooms, and the rooms whose id starts with one of `prefixes` (a token's `x*`).
    Only {
        rooms: Vec<RoomId>,
        prefixes: Vec<String>,
    },
}

impl RoomScope {
    pub fn one(room: RoomId) -> RoomScope {
        RoomScope::Only {
            rooms: vec![room],
            prefixes: Vec::new(),
        }
    }

    pub fn admits(&self, room: &RoomId) -> bool {
        match self {
            RoomScope::All => true,
            RoomScope::Only { rooms, prefixes } => {
                rooms.contains(room) || prefixes.iter().any(|p| room.as_str().starts_with(p))
            }
        }
    }
}

/// One message found: its current text, and `highlight`, an HTML fragment of it (escaped) with
/// the matching words in `<mark>`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub room: RoomId,
    pub seq: Seq,
    pub user: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub body: String,
    #[serde(serialize_with = "serialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    pub highlight: String,
}

impl Hit {
    /// Where a page that ends with this hit ends.
    pub fn cursor(&self) -> SearchCursor {
        SearchCursor {
            ts: self.ts,
            room: self.room.clone(),
            seq: self.seq,
        }
    }
}

/// Where a page of hits ends: hits are ordered by (ts, room, seq), newest first, and the next
/// page holds the ones below. Opaque to clients: `<ts in µs>.<seq>.<room>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCursor {
    pub ts: DateTime<Utc>,
    pub room: RoomId,
    pub seq: Seq,
}

impl SearchCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.ts.timestamp_micros(), self.seq, self.room)
    }

    pub fn parse(text: &str) -> Option<SearchCursor> {
        let mut parts = text.splitn(3, '.');
        let ts = DateTime::from_timestamp_micros(parts.next()?.parse().ok()?)?;
        let seq = Seq::new(parts.next()?.parse().ok()?);
        let room = RoomId::parse(parts.next()?)?;
        Some(SearchCursor { ts, room, seq })
    }

    /// The order of hits, as a key that sorts newest first.
    pub fn key(&self) -> impl Ord + use<> {
        std::cmp::Reverse((self.ts, self.room.clone(), self.seq))
    }
}

/// The words of a text as the in-memory backend compares them: runs of letters and digits,
/// lowercased (Postgres's `simple` configuration, near enough for standalone use).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The in-memory backend's match: every word of the query is a word of the body (operators are
/// read as words; Postgres gives them their meaning).
pub fn matches(query: &[String], body: &str) -> bool {
    let have = words(body);
    !query.is_empty() && query.iter().all(|q| have.contains(q))
}

/// `body`, HTML-escaped, with each word of `query` in `<mark>` (the in-memory backend's highlight).
pub fn highlight(body: &str, query: &[String]) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let hit = query.contains(&word.to_lowercase());
        if hit {
            out.push_str("<mark>");
        }
        escape_into(word, out);
        if hit {
            out.push_str("</mark>");
        }
        word.clear();
    };
    for c in body.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            escape_into(c.encode_utf8(&mut [0; 4]), &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_with_dots_in_the_room_id() {
        let c = SearchCursor {
            ts: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
            room: RoomId::parse("team.general:eu").unwrap(),
            seq: Seq::new(42),
        };
        assert_eq!(SearchCursor::parse(&c.encode()), Some(c));
        assert_eq!(SearchCursor::parse("x.1.r"), None);
        assert_eq!(SearchCursor::parse("1.2"), None);
    }

    #[test]
    fn matching_needs_every_word_and_highlight_escapes_the_rest() {
        let q = words("Deploy FRIDAY");
        assert!(matches(&q, "we deploy on friday, ok?"));
        assert!(!matches(&q, "we deploy on monday"));
        assert!(!matches(&words("&& !!"), "anything"));
        assert_eq!(
            highlight("<b>Deploy</b> & friday", &q),
            "&lt;b&gt;<mark>Deploy</mark>&lt;/b&gt; &amp; <mark>friday</mark>"
        );
    }

    #[test]
    fn a_token_scope_admits_its_rooms_and_prefixes_only() {
        let scope = RoomScope::Only {
            rooms: vec![RoomId::parse("a").unwrap()],
            prefixes: vec!["team-".into()],
        };
        assert!(scope.admits(&RoomId::parse("a").unwrap()));
        assert!(scope.admits(&RoomId::parse("team-x").unwrap()));
        assert!(!scope.admits(&RoomId::parse("b").unwrap()));
        assert!(RoomScope::All.admits(&RoomId::parse("b").unwrap()));
    }
}
