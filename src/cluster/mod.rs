//! What several instances decide from shared rows, as pure functions: who probes which
//! target inside a vantage ([`shard`]), what the vantages' verdicts on a target add up to
//! ([`vote`]), and which vantage is broken rather than its targets ([`vote::impaired`]).
//! No clock, no I/O: the engine's cluster task feeds them what it read.
//!
//! * `config`: `[cluster]`;
//! * `shard`: rendezvous (HRW) hashing of targets over a vantage's live members;
//! * `vote`: quorum across vantages and vantage impairment;
//! * `tally`: the leader's count of every vantage's verdicts, recounted as they change.

mod config;
pub mod shard;
pub mod tally;
pub mod vote;

pub use config::{ClusterConfig, ClusterSpec};
