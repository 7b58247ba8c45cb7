//! Which webhook endpoints want a room's entries (PROTOCOL §8 `[[webhooks]]` `events` and
//! `rooms`): matched by the node, handed to the append, which writes their outbox rows in the
//! entries' own commit.

use super::super::Kind;
use crate::config::Webhook;
use crate::ids::RoomId;

/// The configured endpoints as the append needs them: for a room, the (endpoint, entry type)
/// pairs whose rows it writes.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<(String, Vec<Kind>, Vec<String>)>,
}

impl Routes {
    pub fn new(webhooks: &[Webhook]) -> Routes {
        let routes = webhooks
            .iter()
            .map(|w| {
                let kinds = w.events.iter().filter_map(|e| Kind::parse(e)).collect();
                (w.id().to_owned(), kinds, w.rooms.clone())
            })
            .collect();
        Routes { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The (endpoint, entry type) pairs for `room`, as two parallel arrays.
    pub fn for_room(&self, room: &RoomId) -> (Vec<&str>, Vec<&'static str>) {
        let mut endpoints = Vec::new();
        let mut kinds = Vec::new();
        for (id, wanted, patterns) in &self.routes {
            if patterns.iter().any(|p| room.matches(p)) {
                for kind in wanted {
                    endpoints.push(id.as_str());
                    kinds.push(kind.as_str());
                }
            }
        }
        (endpoints, kinds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, events: &[&str], rooms: &[&str]) -> Webhook {
        Webhook {
            name: name.into(),
            url: "http://x/".into(),
            secret: "0123456789abcdef".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            timeout: std::time::Duration::from_secs(1),
            max_attempts: 3,
        }
    }

    #[test]
    fn a_room_gets_the_pairs_of_the_endpoints_whose_patterns_match() {
        let routes = Routes::new(&[
            hook("all", &["message", "edit", "delete", "react"], &["*"]),
            hook("mod", &["message"], &["support-*", "lobby"]),
        ]);
        let lobby = RoomId::parse("lobby").unwrap();
        let (eps, kinds) = routes.for_room(&lobby);
        assert_eq!(eps, ["all", "all", "all", "all", "mod"]);
        assert_eq!(kinds, ["message", "edit", "delete", "react", "message"]);
        let other = RoomId::parse("lobby-2").unwrap();
        assert_eq!(routes.for_room(&other).0, ["all"; 4]);
        assert!(Routes::new(&[]).for_room(&lobby).0.is_empty());
    }
}
