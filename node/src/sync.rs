//! Small helpers for shared state and shutdown, used by every layer. Owns no state.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// Lock a mutex, taking the data even if a thread panicked while holding it: every
/// mutex in the node guards plain data whose invariants hold between statements, so a
/// poisoned lock carries no half-done update worth refusing.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
