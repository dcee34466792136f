//! Scenario and randomized tests of the session state machine, on the host, by subject.

mod harness;
mod limits;
mod messages;
mod random;
mod sockets;
mod upstream;
