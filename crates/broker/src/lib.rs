//! The Strata broker: a tokio TCP server speaking the Kafka protocol over the storage engine.
//!
//! - [`server`] accepts connections and runs background work (flush, retention, checkpoints).
//! - [`connection`] frames requests, keeps several in flight per connection and writes the
//!   responses back in request order.
//! - [`handlers`] turns each decoded request into storage and metadata operations.
//! - [`state::Broker`] is the shared state: the metadata log and the partitions it implies.
//! - [`groups`] runs the group coordinator state machine (`strata-group`) over the
//!   `__consumer_offsets` topic.
//! - [`txn`] runs the transaction coordinator state machine (`strata-txn`) over the
//!   `__transaction_state` topic and writes transaction markers.
//! - `inter_broker` carries Kafka requests between brokers (transaction markers, KIP-890
//!   verification) on the controller listener.
//! - [`errors`] is the one place where Kafka error codes are chosen.

pub mod audit;
pub mod authorizer;
pub mod bootstrap;
pub mod cleaner;
pub mod config;
pub mod connection;
pub mod connection_limits;
mod control;
pub mod errors;
mod fetcher;
pub mod groups;
pub mod handlers;
mod inter_broker;
pub mod keystore;
pub mod listeners;
pub mod metrics;
pub mod oauth;
pub mod peer_security;
pub mod quotas;
pub mod replicas;
mod sasl;
pub mod server;
pub mod state;
pub mod throttle;
pub mod tiering;
pub mod tls;
pub mod topic_config;
pub mod txn;
pub mod zero_copy;

pub use config::BrokerConfig;
pub use server::{run, run_with, ServeError};
pub use state::{Broker, TopicError};
