//! Which open WebSockets belong to which session, so that ending a session (logout, idle
//! timeout) closes them, as approuter does: a WebSocket never outlives the login it was opened
//! with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The open WebSockets per session id: one cancellation token per session, shared by its sockets.
#[derive(Debug, Default)]
pub struct SessionSockets {
    open: Mutex<HashMap<String, (CancellationToken, usize)>>,
}

/// One relay's registration; dropping it unregisters the socket.
#[derive(Debug)]
pub struct SocketGuard {
    registry: Arc<SessionSockets>,
    session: String,
    pub ended: CancellationToken,
}

impl SessionSockets {
    /// Registers a socket of `session`; its `ended` token fires when the session ends.
    pub fn register(&self, session: &str) -> CancellationToken {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let entry = open
            .entry(session.to_owned())
            .or_insert_with(|| (CancellationToken::new(), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    /// A socket of `session` closed.
    pub fn unregister(&self, session: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = open.get_mut(session) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                open.remove(session);
            }
        }
    }

    /// The session ended: its sockets close.
    pub fn end(&self, session: &str) {
        let ended = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
        if let Some((token, count)) = ended {
            tracing::info!(sockets = count, "session ended; closing its websockets");
            token.cancel();
        }
    }

    /// How many sessions have open sockets.
    pub fn sessions(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl SocketGuard {
    pub fn new(registry: &Arc<SessionSockets>, session: &str) -> Self {
        Self {
            ended: registry.register(session),
            registry: registry.clone(),
            session: session.to_owned(),
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.registry.unregister(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_session_cancels_its_sockets_only() {
        let registry = Arc::new(SessionSockets::default());
        let a1 = SocketGuard::new(&registry, "a");
        let a2 = SocketGuard::new(&registry, "a");
        let b = SocketGuard::new(&registry, "b");
        assert_eq!(registry.sessions(), 2);
        registry.end("a");
        assert!(a1.ended.is_cancelled() && a2.ended.is_cancelled());
        assert!(!b.ended.is_cancelled());
        drop(b);
        assert_eq!(registry.sessions(), 0);
        drop((a1, a2));
        registry.end("unknown");
    }
}
