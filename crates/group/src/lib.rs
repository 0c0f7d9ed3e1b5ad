//! The group coordinator, as pure state machines: requests and the current time go in,
//! responses and records to persist come out. No sockets, no files, no clock of its own.
//!
//! - [`Coordinator`] owns every group: classic groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup,
//!   KIP-345 static members, KIP-394 member-id-required) and KIP-848 consumer groups
//!   (ConsumerGroupHeartbeat with server-side assignment), plus committed offsets.
//! - Responses that wait for other members (a JoinGroup until the rebalance completes, a
//!   SyncGroup until the leader's assignment arrives) are named by a caller's [`Token`] and
//!   come out later as [`Effect`]s, from another request or from [`Coordinator::tick`].
//! - State changes that must survive a restart come out as [`Effect::Persist`] records in the
//!   `__consumer_offsets` format ([`codec`]); the caller appends them, makes them durable and
//!   only then sends the responses from the same call. Replaying those records through
//!   [`Coordinator::replay`] rebuilds the state.

pub mod assignor;
pub mod codec;
mod consumer;
mod coordinator;
mod error;

pub use consumer::{
    ConsumerDescription, ConsumerHeartbeat, ConsumerHeartbeatResponse, ConsumerMemberDescription,
    TopicInfo,
};
pub use coordinator::*;
pub use error::{GroupError, Result};
