//! What the ConversationRelay shell (`/relay` in `voxbridge-media`) needs from an agent: a
//! [`DialogFactory`] that builds each session's [`Dialog`] from its custom parameters.

use std::collections::BTreeMap;

use crate::dialog::Dialog;

/// Builds the dialog of each ConversationRelay session.
pub trait DialogFactory: Send + Sync + 'static {
    /// The agent's name (logs, registry).
    fn name(&self) -> &'static str;

    /// A fresh dialog for a call with these custom parameters; `Err` is a message saying why
    /// the call cannot be served (e.g. an unknown `screening`).
    fn dialog(&self, parameters: &BTreeMap<String, String>) -> Result<Box<dyn Dialog>, String>;
}
