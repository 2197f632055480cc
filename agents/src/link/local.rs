//! Two agents in one process: the same [`Session`] over tokio channels, with no heartbeats
//! (a dropped end closes the channel, which the other end sees at once).

use super::{AgentId, Session, CHANNEL_CAPACITY};
use tokio::sync::mpsc;

/// A connected pair: the parent's end (whose peer is `child`) and the child's end.
pub fn local_pair(parent: AgentId, child: AgentId) -> (Session, Session) {
    let (to_child, child_inbox) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_parent, parent_inbox) = mpsc::channel(CHANNEL_CAPACITY);
    let parent_end = Session {
        me: parent.id.clone(),
        peer: child.clone(),
        remote: false,
        seq: 0,
        out: to_child,
        inbox: parent_inbox,
        _end: None,
    };
    let child_end = Session {
        me: child.id,
        peer: parent,
        remote: false,
        seq: 0,
        out: to_parent,
        inbox: child_inbox,
        _end: None,
    };
    (parent_end, child_end)
}
