//! Sending to members: the same pre-serialised bytes to everyone, through each member's bounded
//! [`Outbox`](super::Outbox); evicting members that are slow or gone; presence bookkeeping.

use std::collections::HashMap;

use bytestring::ByteString;

use super::{Delivery, Fanout, Member, Room, SessionId, ToSession, Undeliverable};
use crate::protocol::{ErrorCode, PresenceUser, ServerFrame};

impl Room {
    /// Sends to one member, honouring its backlog.
    pub(super) fn push(member: &mut Member, frames: &Fanout) -> Result<(), Undeliverable> {
        if let Some(backlog) = &mut member.backlog {
            match frames {
                Fanout::One(d) => backlog.push(d.clone()),
                Fanout::Many(batch) => backlog.extend(batch.iter().cloned()),
            }
            return Ok(());
        }
        member.outbox.deliver(match frames {
            Fanout::One(d) => ToSession::Live(d.clone()),
            Fanout::Many(batch) => ToSession::LiveBatch(batch.clone()),
        })
    }

    /// Fans frames out (the same bytes to everyone); `skip_user` leaves out that user's sessions.
    pub(super) fn broadcast(
        &mut self,
        frames: Fanout,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        let mut gone: Vec<(SessionId, bool)> = Vec::new();
        for (id, member) in self.members.iter_mut() {
            if skip == Some(id) || skip_user == Some(member.user.user.as_str()) {
                continue;
            }
            if let Err(e) = Self::push(member, &frames) {
                gone.push((id.clone(), e == Undeliverable::Slow));
            }
        }
        for (id, slow) in gone {
            self.evict(&id, slow);
        }
    }

    /// Broadcasts one control frame (presence, typing).
    pub(super) fn broadcast_frame(
        &mut self,
        frame: ByteString,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        let one = Fanout::One(Delivery {
            frame,
            committed: None,
            seq: None,
        });
        self.broadcast(one, skip, skip_user);
    }

    /// Ends a membership the room could not keep (slow or vanished session).
    pub(super) fn evict(&mut self, session: &SessionId, slow: bool) {
        if let Some(member) = self.members.remove(session) {
            if slow {
                self.registry.deps.metrics.slow_consumers.inc();
                tracing::info!(room = %self.id, session = %session, "slow consumer evicted");
                // A notice is never refused for size: the session learns it must close with 1013.
                member.outbox.reply(ToSession::Dropped {
                    room: self.id.clone(),
                    slow: true,
                });
            }
            self.announce_leave(&member.user, member.hidden);
        }
    }

    /// Who is in the room across the cluster, each user once.
    pub(super) fn presence(&self) -> Vec<PresenceUser> {
        let mut seen: HashMap<&str, &PresenceUser> = HashMap::new();
        let local = self.members.values().filter(|m| !m.hidden).map(|m| &m.user);
        for u in local.chain(self.remote_users()) {
            seen.entry(u.user.as_str()).or_insert(u);
        }
        let mut users: Vec<PresenceUser> = seen.into_values().cloned().collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    /// A visible session of `user` on this node.
    pub(super) fn has_local_user(&self, user: &str) -> bool {
        self.members
            .values()
            .any(|m| !m.hidden && m.user.user == user)
    }

    /// `user` is present on any node.
    pub(super) fn has_user(&self, user: &str) -> bool {
        self.has_local_user(user) || self.has_remote_user(user)
    }

    /// A visible session joined (call before inserting it): the other nodes hear of the user's first
    /// socket here, members of a user new to the whole cluster.
    pub(super) fn announce_join(&mut self, user: &PresenceUser) {
        if let Some(cluster) = self.cluster().filter(|_| !self.has_local_user(&user.user)) {
            cluster.here(&self.id, vec![user.clone()]);
        }
        if !self.has_user(&user.user) {
            self.presence_diff(std::slice::from_ref(user), &[]);
        }
    }

    /// A session left (call after removing it): the mirror of [`Room::announce_join`].
    pub(super) fn announce_leave(&mut self, user: &PresenceUser, hidden: bool) {
        if hidden {
            return;
        }
        if let Some(cluster) = self.cluster().filter(|_| !self.has_local_user(&user.user)) {
            cluster.gone(&self.id, vec![user.clone()]);
        }
        if !self.has_user(&user.user) {
            self.presence_diff(&[], std::slice::from_ref(user));
        }
    }

    pub(super) fn error_frame(r#ref: Option<&str>, code: ErrorCode, message: &str) -> ByteString {
        ServerFrame::Error {
            r#ref,
            code: code.as_str(),
            message,
            retry_after_ms: None,
        }
        .encode()
    }
}
