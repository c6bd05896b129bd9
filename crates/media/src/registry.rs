//! The live-call registry: handles (a control sender and metadata), never session state.
//!
//! Each call's driver task registers once Twilio's `start` names the call, and holds a
//! [`Registration`] whose `Drop` removes the entry, so every exit path (clean end, error, panic
//! unwinding, task abort) unregisters. Lookups clone what they need out of the map; no map
//! guard is ever held across an `.await`.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use tokio::sync::mpsc;

/// An instruction for one call's driver from outside (API, operator, shutdown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Hang up after the audio already queued has played.
    Hangup {
        /// Goes to the call record.
        reason: String,
    },
    /// End the call now with close 1001, as at the end of the shutdown drain.
    Shutdown,
}

/// What the registry knows about a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEntry {
    /// Twilio call SID (`CA…`).
    pub call_sid: String,
    /// Twilio stream SID (`MZ…`).
    pub stream_sid: String,
    /// The agent running the call.
    pub agent: String,
    /// When the stream's `start` arrived.
    pub started_at: SystemTime,
}

#[derive(Debug, Clone)]
struct Handle {
    entry: CallEntry,
    control: mpsc::Sender<Control>,
}

/// Live calls by call SID and by stream SID. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// stream SID -> handle. A stream SID is unique per stream, so this is the primary key.
    by_stream: DashMap<String, Handle>,
    /// call SID -> stream SID (the newest stream of that call).
    by_call: DashMap<String, String>,
}

/// Why a control message did not reach a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No live call with that SID.
    #[error("no live call with that SID")]
    NotFound,
    /// The call's control queue is full or its driver is ending.
    #[error("call is busy or ending")]
    Unavailable,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live (started) calls.
    pub fn count(&self) -> usize {
        self.inner.by_stream.len()
    }

    /// Whether no call is live.
    pub fn is_empty(&self) -> bool {
        self.inner.by_stream.is_empty()
    }

    /// A snapshot of the live calls, oldest first.
    pub fn list(&self) -> Vec<CallEntry> {
        let mut calls: Vec<CallEntry> = self
            .inner
            .by_stream
            .iter()
            .map(|h| h.value().entry.clone())
            .collect();
        calls.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.stream_sid.cmp(&b.stream_sid))
        });
        calls
    }

    /// The live call with this call SID.
    pub fn by_call_sid(&self, call_sid: &str) -> Option<CallEntry> {
        let stream_sid = self
            .inner
            .by_call
            .get(call_sid)
            .map(|s| s.value().clone())?;
        self.by_stream_sid(&stream_sid)
    }

    /// The live call with this stream SID.
    pub fn by_stream_sid(&self, stream_sid: &str) -> Option<CallEntry> {
        self.inner
            .by_stream
            .get(stream_sid)
            .map(|h| h.value().entry.clone())
    }

    /// Sends `control` to the call with this call SID without waiting.
    pub fn control(&self, call_sid: &str, control: Control) -> Result<(), ControlError> {
        let sender = {
            let stream_sid = self
                .inner
                .by_call
                .get(call_sid)
                .map(|s| s.value().clone())
                .ok_or(ControlError::NotFound)?;
            self.inner
                .by_stream
                .get(&stream_sid)
                .map(|h| h.value().control.clone())
                .ok_or(ControlError::NotFound)?
        };
        sender
            .try_send(control)
            .map_err(|_| ControlError::Unavailable)
    }

    /// Registers a call; the entry lives as long as the returned guard.
    pub(crate) fn register(
        &self,
        entry: CallEntry,
        control: mpsc::Sender<Control>,
    ) -> Registration {
        let call_sid = entry.call_sid.clone();
        let stream_sid = entry.stream_sid.clone();
        if self
            .inner
            .by_stream
            .insert(
                stream_sid.clone(),
                Handle {
                    entry,
                    control: control.clone(),
                },
            )
            .is_some()
        {
            tracing::warn!(%stream_sid, "stream SID registered twice; the newer stream wins");
        }
        self.inner
            .by_call
            .insert(call_sid.clone(), stream_sid.clone());
        Registration {
            registry: self.clone(),
            call_sid,
            stream_sid,
            control,
        }
    }
}

/// Keeps a call registered; dropping it removes the entry (only if it is still this stream's).
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Registry,
    call_sid: String,
    stream_sid: String,
    /// Identifies this registration's entry (a newer one for the same SIDs has another).
    control: mpsc::Sender<Control>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let inner = &self.registry.inner;
        // A second socket may have registered the same stream SID since (the newer one wins);
        // remove the entry only while it is still ours, identified by our control channel.
        let removed = inner
            .by_stream
            .remove_if(&self.stream_sid, |_, handle| {
                handle.control.same_channel(&self.control)
            })
            .is_some();
        if removed {
            // Another stream of the same call may have registered since; leave its mapping
            // alone.
            inner
                .by_call
                .remove_if(&self.call_sid, |_, stream| *stream == self.stream_sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(call: &str, stream: &str) -> CallEntry {
        CallEntry {
            call_sid: call.into(),
            stream_sid: stream.into(),
            agent: "echo".into(),
            started_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn guard_removes_entry_on_drop() {
        let registry = Registry::new();
        let (tx, mut rx) = mpsc::channel(1);
        let guard = registry.register(entry("CA1", "MZ1"), tx);
        assert_eq!(registry.count(), 1);
        assert_eq!(
            registry.by_call_sid("CA1").map(|e| e.stream_sid),
            Some("MZ1".into())
        );
        assert_eq!(
            registry.by_stream_sid("MZ1").map(|e| e.call_sid),
            Some("CA1".into())
        );
        registry
            .control("CA1", Control::Shutdown)
            .expect("call is live");
        assert_eq!(rx.try_recv(), Ok(Control::Shutdown));
        drop(guard);
        assert!(registry.is_empty());
        assert_eq!(registry.by_call_sid("CA1"), None);
        assert_eq!(
            registry.control("CA1", Control::Shutdown),
            Err(ControlError::NotFound)
        );
    }

    #[test]
    fn dropping_a_replaced_registration_keeps_the_newer_one() {
        let registry = Registry::new();
        let (old_tx, _old_rx) = mpsc::channel(1);
        let (new_tx, mut new_rx) = mpsc::channel(1);
        let old = registry.register(entry("CA1", "MZ1"), old_tx);
        let newer = registry.register(entry("CA1", "MZ1"), new_tx);
        drop(old);
        assert_eq!(registry.count(), 1, "the newer registration must survive");
        registry
            .control("CA1", Control::Shutdown)
            .expect("the newer call is still controllable");
        assert_eq!(new_rx.try_recv(), Ok(Control::Shutdown));
        drop(newer);
        assert!(registry.is_empty());
    }

    #[test]
    fn old_stream_of_a_call_does_not_unregister_the_new_one() {
        let registry = Registry::new();
        let (tx, _rx) = mpsc::channel(1);
        let first = registry.register(entry("CA1", "MZ1"), tx.clone());
        let second = registry.register(entry("CA1", "MZ2"), tx);
        assert_eq!(registry.count(), 2);
        drop(first);
        assert_eq!(
            registry.by_call_sid("CA1").map(|e| e.stream_sid),
            Some("MZ2".into())
        );
        assert_eq!(registry.list().len(), 1);
        drop(second);
        assert!(registry.is_empty());
    }
}
