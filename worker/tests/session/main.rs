//! Scenario and randomized tests of the session state machine, on the host, by subject.

mod cache;
mod deadlines;
mod encoding;
mod flow;
mod harness;
mod limits;
mod messages;
mod random;
mod resume;
mod sockets;
mod streaming;
mod upstream;
mod words;
