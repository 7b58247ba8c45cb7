//! Admission of new sockets: at most `limits.max_connections_per_user` open sockets per user and
//! `limits.max_connections_per_ip` per client IP on this node (429 `rate_limited` before the
//! upgrade). The client IP is the peer address, or, when the peer is one of `http.trusted_proxies`
//! (a load balancer), the nearest untrusted address in `X-Forwarded-For`. Only the rightmost
//! entries can be trusted: each proxy appends, and a client may write anything on the left.
//!
//! Every long-lived connection counts (PROTOCOL §4): WebSocket sessions, SSE streams and waiting
//! long-polls. A [`Permit`] is held for the connection's whole life; dropping it frees the slot.
//! The HTTP side (`http::admission::admit`) turns a refusal into a 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

#[derive(Default)]
struct Counts {
    users: HashMap<String, usize>,
    ips: HashMap<IpAddr, usize>,
}

pub struct Admission {
    per_user: usize,
    per_ip: usize,
    trusted: Vec<IpNet>,
    counts: Arc<Mutex<Counts>>,
}

/// Why a socket was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    User,
    Ip,
}

/// One admitted socket's slot.
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    user: String,
    ip: Option<IpAddr>,
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses `http.trusted_proxies`: a comma list of addresses or CIDR ranges.
pub fn parse_trusted(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))
        })
        .collect()
}

impl Admission {
    pub fn new(per_user: usize, per_ip: usize, trusted: Vec<IpNet>) -> Admission {
        Admission {
            per_user,
            per_ip,
            trusted,
            counts: Arc::default(),
        }
    }

    fn trusts(&self, ip: &IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client's address: the peer, or behind trusted proxies the nearest untrusted hop.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        let (true, Some(xff)) = (self.trusts(&peer), forwarded_for) else {
            return Some(peer);
        };
        let mut nearest = peer;
        for hop in xff.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(&ip) => nearest = ip,
                Ok(ip) => return Some(ip),
                // Garbage: nothing further left can be believed.
                Err(_) => return Some(nearest),
            }
        }
        Some(nearest)
    }

    /// Takes a slot for `user` from `ip`, or says which limit is full.
    pub fn admit(&self, user: &str, ip: Option<IpAddr>) -> Result<Permit, Refused> {
        let mut counts = lock(&self.counts);
        if counts.users.get(user).copied().unwrap_or(0) >= self.per_user {
            return Err(Refused::User);
        }
        if let Some(ip) = ip
            && counts.ips.get(&ip).copied().unwrap_or(0) >= self.per_ip
        {
            return Err(Refused::Ip);
        }
        *counts.users.entry(user.to_owned()).or_default() += 1;
        if let Some(ip) = ip {
            *counts.ips.entry(ip).or_default() += 1;
        }
        Ok(Permit {
            counts: self.counts.clone(),
            user: user.to_owned(),
            ip,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.users.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.users.remove(&self.user);
            }
        }
        if let Some(ip) = self.ip
            && let Some(n) = counts.ips.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.ips.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_per_user_and_per_ip_and_permits_free_their_slot() {
        let a = Admission::new(2, 3, vec![]);
        let p1 = a.admit("u", Some(ip("10.0.0.1"))).unwrap();
        let _p2 = a.admit("u", Some(ip("10.0.0.2"))).unwrap();
        assert_eq!(
            a.admit("u", Some(ip("10.0.0.3"))).err(),
            Some(Refused::User)
        );
        drop(p1);
        let _p3 = a.admit("u", Some(ip("10.0.0.3"))).unwrap();
        let _v1 = a.admit("v", Some(ip("10.0.0.9"))).unwrap();
        let _v2 = a.admit("w", Some(ip("10.0.0.9"))).unwrap();
        let _v3 = a.admit("x", Some(ip("10.0.0.9"))).unwrap();
        assert_eq!(a.admit("y", Some(ip("10.0.0.9"))).err(), Some(Refused::Ip));
        assert!(a.admit("y", None).is_ok(), "no address, no IP limit");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_from_the_right() {
        let a = Admission::new(1, 1, parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap());
        // Not a trusted peer: its header is ignored.
        assert_eq!(
            a.client_ip(Some(ip("203.0.113.9")), Some("1.2.3.4")),
            Some(ip("203.0.113.9"))
        );
        // Trusted load balancer: the nearest untrusted hop, not the client-written left end.
        assert_eq!(
            a.client_ip(
                Some(ip("10.1.2.3")),
                Some("6.6.6.6, 198.51.100.7, 192.168.1.1")
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            a.client_ip(Some(ip("10.1.2.3")), None),
            Some(ip("10.1.2.3"))
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            a.client_ip(Some(ip("10.1.2.3")), Some("1.1.1.1, not-an-ip")),
            Some(ip("10.1.2.3"))
        );
        assert!(parse_trusted("10.0.0.0/8,bad").is_err());
        assert_eq!(parse_trusted(" ").unwrap(), vec![]);
    }
}
