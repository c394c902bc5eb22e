//! In-flight dedupe: while one task fetches a key, other tasks asking for the same key wait for
//! its outcome instead of sending the request again.
//!
//! The map's lock is held only to look up, insert or remove an entry, never across an await.
//! The leader owns a [`Leading`] guard; dropping it (success, error, or the leader's future being
//! cancelled) removes the entry first and then closes the channel, so a waiter whose leader
//! vanished without an outcome wakes up and tries again itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::provider::{LlmResponse, ProviderError};

/// What a leader publishes: the response, or the error every waiter then reports.
pub(crate) type Outcome = Result<Arc<LlmResponse>, Arc<ProviderError>>;

type Slot = watch::Receiver<Option<Outcome>>;

/// The keys being fetched right now.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    map: Mutex<HashMap<String, Slot>>,
}

/// Either this task fetches (and must publish), or it waits for the task that does.
pub(crate) enum Role<'a> {
    /// This task fetches the key.
    Leader(Leading<'a>),
    /// Another task is fetching it.
    Follower(Slot),
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent (single insert or
        // remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the fetch of `key` in progress, or becomes its leader.
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> Role<'a> {
        let mut map = self.lock();
        if let Some(rx) = map.get(key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_string(), rx);
        Role::Leader(Leading {
            owner: self,
            key,
            tx: Some(tx),
        })
    }

    /// How many keys are being fetched (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The leader's guard: publish an outcome with [`Leading::publish`]; drop to leave.
pub(crate) struct Leading<'a> {
    owner: &'a InFlight,
    key: &'a str,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl Leading<'_> {
    /// Hands `outcome` to every waiter (and to tasks that join before this guard is dropped).
    pub(crate) fn publish(&self, outcome: Outcome) {
        if let Some(tx) = &self.tx {
            tx.send_replace(Some(outcome));
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.owner.lock().remove(self.key);
        // The sender drops after the entry is gone: woken waiters re-join a clean map.
        self.tx.take();
    }
}

/// Waits for the leader's outcome; `None` when the leader went away without one.
pub(crate) async fn wait(mut rx: Slot) -> Option<Outcome> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}
