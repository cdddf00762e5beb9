//! Streaming requests waiting for their client, each under a random single-use token.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cri_api::v1 as cri;

use crate::error::{Error, Result};

/// How long a URL stays valid (kubelet connects at once; Kubernetes' servers use a minute).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Requests that may wait for their client at once. A client that asks for URLs and never
/// connects cannot grow the cache past this.
pub const MAX_PENDING: usize = 4096;

/// A request validated by its RPC, waiting for the connection that runs it.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    /// The URL path's first segment for this kind of request.
    pub fn route(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug, Default)]
pub struct Tokens {
    /// `http://host:port` or `https://…`, once the server listens.
    base_url: OnceLock<String>,
    pending: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl Tokens {
    /// Where the streaming server listens (set once, when it binds).
    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// Caches `request` and returns its URL.
    pub fn issue(&self, request: Pending) -> Result<String> {
        let base = self.base_url.get().ok_or_else(|| {
            Error::Unavailable("the streaming server is not listening yet".to_string())
        })?;
        let route = request.route();
        let token = new_token();
        let now = Instant::now();
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| Error::internal("streaming tokens", "lock poisoned"))?;
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, (_, issued)| now.duration_since(*issued) < TOKEN_TTL);
        }
        if pending.len() >= MAX_PENDING {
            return Err(Error::ResourceExhausted(format!(
                "{MAX_PENDING} streaming requests already wait for their client; try again later"
            )));
        }
        pending.insert(token.clone(), (request, now));
        Ok(format!("{base}/{route}/{token}"))
    }

    /// Takes the request of `token` for the route `route`: `None` when the token is unknown,
    /// already used, expired or issued for another route. A token is gone after this call,
    /// whatever the answer.
    pub fn take(&self, route: &str, token: &str) -> Option<Pending> {
        let (request, issued) = self.pending.lock().ok()?.remove(token)?;
        (issued.elapsed() < TOKEN_TTL && request.route() == route).then_some(request)
    }

    /// Requests waiting now (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// 128 random bits, URL-safe.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(cri::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
    }

    fn token_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap()
    }

    #[test]
    fn a_token_works_once_for_its_own_route() {
        let tokens = Tokens::default();
        assert!(matches!(tokens.issue(exec()), Err(Error::Unavailable(_))));
        tokens.set_base_url("http://127.0.0.1:1234".into());
        let url = tokens.issue(exec()).unwrap();
        assert!(url.starts_with("http://127.0.0.1:1234/exec/"), "{url}");
        assert!(tokens.take("exec", token_of(&url)).is_some());
        assert!(tokens.take("exec", token_of(&url)).is_none(), "used once");
        let other = tokens.issue(exec()).unwrap();
        assert!(tokens.take("attach", token_of(&other)).is_none());
        assert!(
            tokens.take("exec", token_of(&other)).is_none(),
            "a token tried on the wrong route is spent"
        );
        assert!(tokens.take("exec", "unknown").is_none());
    }

    #[test]
    fn tokens_are_unguessable_and_distinct() {
        let tokens = Tokens::default();
        tokens.set_base_url("http://h:1".into());
        let a = tokens.issue(exec()).unwrap();
        let b = tokens.issue(exec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(token_of(&a).len(), 22);
    }

    #[test]
    fn the_cache_is_capped_and_expired_tokens_make_room() {
        let tokens = Tokens::default();
        tokens.set_base_url("http://h:1".into());
        for _ in 0..MAX_PENDING {
            tokens.issue(exec()).unwrap();
        }
        assert!(matches!(
            tokens.issue(exec()),
            Err(Error::ResourceExhausted(_))
        ));
        // Age every entry past the TTL: the next issue prunes them.
        {
            let mut pending = tokens.pending.lock().unwrap();
            let old = Instant::now() - TOKEN_TTL - Duration::from_secs(1);
            for (_, issued) in pending.values_mut() {
                *issued = old;
            }
        }
        let url = tokens.issue(exec()).unwrap();
        assert_eq!(tokens.waiting(), 1);
        assert!(tokens.take("exec", token_of(&url)).is_some());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let tokens = Tokens::default();
        tokens.set_base_url("http://h:1".into());
        let url = tokens.issue(exec()).unwrap();
        {
            let mut pending = tokens.pending.lock().unwrap();
            for (_, issued) in pending.values_mut() {
                *issued = Instant::now() - TOKEN_TTL;
            }
        }
        assert!(tokens.take("exec", token_of(&url)).is_none());
    }
}
