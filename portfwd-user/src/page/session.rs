//! Sessions of the owner's page, its CSRF tokens, and the brake on guessing the token.
//!
//! - A session is made by logging in with the API token. Its id (32 random bytes) is the
//!   `portfwd_session` cookie: `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when the
//!   page is reached over TLS (through a proxy that says `X-Forwarded-Proto: https`; the
//!   daemon itself speaks plain HTTP on loopback or the LAN).
//! - A session ends on log-out, after [`IDLE`] without a request, and [`LIFETIME`] after the
//!   login in any case. At most [`MAX_SESSIONS`] live at once; a new login ends the oldest.
//! - Each session has its own CSRF token, which every form carries.
//! - After [`FREE_TRIES`] wrong tokens from one address, each further attempt from it waits
//!   [`PENALTY`] after the one before (one attempt a second, however many are sent at once);
//!   the right token still gets in, after its wait. Attempts beyond [`MAX_QUEUE`] of waiting
//!   are refused unchecked (429), so a flood cannot push the owner's turn hours away. An address is forgotten
//!   [`FAILURE_MEMORY`] after its last wrong token, and at most [`MAX_ADDRESSES`] are kept.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_mins(30);
/// A session ends this long after its login in any case.
pub const LIFETIME: Duration = Duration::from_hours(12);
/// Sessions alive at once.
pub const MAX_SESSIONS: usize = 64;
/// Wrong tokens an address may send before each attempt waits.
pub const FREE_TRIES: u32 = 5;
/// The wait between attempts after [`FREE_TRIES`].
pub const PENALTY: Duration = Duration::from_secs(1);
/// The longest an attempt waits its turn; later ones are refused at once.
pub const MAX_QUEUE: Duration = Duration::from_secs(5);
/// How long an address's wrong tokens are remembered.
pub const FAILURE_MEMORY: Duration = Duration::from_mins(15);
/// Addresses whose wrong tokens are remembered.
pub const MAX_ADDRESSES: usize = 1024;

/// A logged-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// What every form of this session carries.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The page's sessions and login brake.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    /// When the next attempt from the address may be checked.
    next_try: Instant,
}

impl Sessions {
    /// A new session; `None` when the kernel gives no random bytes (then no one logs in).
    pub fn create(&self, now: Instant) -> Option<(String, Session)> {
        let id = random_hex::<32>()?;
        let session = Session {
            csrf: random_hex::<32>()?,
            created: now,
            last_seen: now,
        };
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|_, s| s.alive(now));
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(id, _)| id.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The session `id` names, if it is alive; `used` marks it used now (the owner did
    /// something; the page's own refreshes and long polls do not keep a session alive).
    pub fn get(&self, id: &str, now: Instant, used: bool) -> Option<Session> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = live.get_mut(id)?;
        if !session.alive(now) {
            live.remove(id);
            return None;
        }
        if used {
            session.last_seen = now;
        }
        Some(session.clone())
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// How long a login attempt from `peer` must wait before its token is checked (the
    /// attempt takes that turn), or `None` when the queue from `peer` is longer than
    /// [`MAX_QUEUE`] already: such an attempt is answered at once, unchecked, so a flood
    /// cannot push the owner's own attempt hours away.
    pub fn login_wait(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(f) = failures.get_mut(&peer) else {
            return Some(Duration::ZERO);
        };
        if now.duration_since(f.last) > FAILURE_MEMORY {
            failures.remove(&peer);
            return Some(Duration::ZERO);
        }
        if f.count < FREE_TRIES {
            return Some(Duration::ZERO);
        }
        let at = f.next_try.max(now + PENALTY);
        if at.duration_since(now) > MAX_QUEUE {
            return None;
        }
        f.next_try = at + PENALTY;
        Some(at.duration_since(now))
    }

    /// A wrong token from `peer`.
    pub fn login_failed(&self, peer: IpAddr, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&peer) {
            failures.retain(|_, f| now.duration_since(f.last) <= FAILURE_MEMORY);
            if failures.len() >= MAX_ADDRESSES
                && let Some(oldest) = failures.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a)
            {
                failures.remove(&oldest);
            }
        }
        let f = failures.entry(peer).or_insert(Failures {
            count: 0,
            last: now,
            next_try: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    /// The right token from `peer`: its wrong ones are forgotten.
    pub fn login_succeeded(&self, peer: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&peer);
    }
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < IDLE && now.duration_since(self.created) < LIFETIME
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
#[must_use]
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `N` random bytes from the kernel as hex, or `None` when `/dev/urandom` cannot be read.
#[must_use]
pub fn random_hex<const N: usize>() -> Option<String> {
    crate::daemon::kernel_random::<N>().map(|bytes| crate::state::hex(&bytes))
}

/// The value of cookie `name` in a `Cookie` header.
#[must_use]
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_when_old_and_on_logout() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (id, session) = sessions.create(t0).expect("random");
        assert_eq!(session.csrf.len(), 64);
        assert!(
            sessions
                .get(&id, t0 + Duration::from_mins(29), true)
                .is_some()
        );
        // Used at 29 minutes: alive until 59; the page's own polls do not count.
        assert!(
            sessions
                .get(&id, t0 + Duration::from_mins(58), false)
                .is_some()
        );
        assert!(
            sessions
                .get(&id, t0 + Duration::from_hours(1), false)
                .is_none()
        );
        let (id, _) = sessions.create(t0).expect("random");
        // Used every 20 minutes: alive until the lifetime ends.
        for step in 1..(LIFETIME.as_secs() / 1200) {
            assert!(
                sessions
                    .get(&id, t0 + Duration::from_secs(step * 1200), true)
                    .is_some()
            );
        }
        assert!(sessions.get(&id, t0 + LIFETIME, true).is_none());
        let (id, _) = sessions.create(t0).expect("random");
        sessions.end(&id);
        assert!(sessions.get(&id, t0, true).is_none());
        assert!(sessions.get("", t0, true).is_none());
    }

    #[test]
    fn the_oldest_session_makes_room() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let first = sessions.create(t0).expect("random").0;
        for i in 1..=MAX_SESSIONS {
            sessions.create(t0 + Duration::from_secs(i as u64));
        }
        assert!(
            sessions
                .get(&first, t0 + Duration::from_secs(100), true)
                .is_none()
        );
        assert_eq!(sessions.live.lock().expect("lock").len(), MAX_SESSIONS);
    }

    #[test]
    fn five_wrong_tokens_then_one_attempt_a_second() {
        let sessions = Sessions::default();
        let peer: IpAddr = "10.0.0.5".parse().expect("addr");
        let other: IpAddr = "10.0.0.6".parse().expect("addr");
        let t0 = Instant::now();
        for _ in 0..FREE_TRIES {
            assert_eq!(sessions.login_wait(peer, t0), Some(Duration::ZERO));
            sessions.login_failed(peer, t0);
        }
        // Three attempts at once: one second apart.
        for turn in 1..=5 {
            assert_eq!(sessions.login_wait(peer, t0), Some(PENALTY * turn));
        }
        // A flood is refused beyond five seconds of queue, without taking turns.
        assert_eq!(sessions.login_wait(peer, t0), None);
        assert_eq!(sessions.login_wait(peer, t0), None);
        assert_eq!(
            sessions.login_wait(peer, t0 + Duration::from_secs(2)),
            Some(PENALTY * 4)
        );
        // Another address is not slowed.
        assert_eq!(sessions.login_wait(other, t0), Some(Duration::ZERO));
        // The right token clears the count.
        sessions.login_succeeded(peer);
        assert_eq!(sessions.login_wait(peer, t0), Some(Duration::ZERO));
        // Wrong tokens are forgotten after a while.
        for _ in 0..FREE_TRIES {
            sessions.login_failed(peer, t0);
        }
        assert_eq!(
            sessions.login_wait(peer, t0 + FAILURE_MEMORY + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        for i in 0..(u32::try_from(MAX_ADDRESSES).expect("small") + 10) {
            sessions.login_failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(sessions.failures.lock().expect("lock").len(), MAX_ADDRESSES);
    }

    #[test]
    fn cookies_and_secrets() {
        assert_eq!(
            cookie("a=1; portfwd_session=xyz; b=2", "portfwd_session"),
            Some("xyz")
        );
        assert_eq!(cookie("portfwd_sessionx=1", "portfwd_session"), None);
        assert_eq!(cookie("", "a"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
