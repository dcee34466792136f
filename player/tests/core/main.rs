//! Scenario and randomized tests of the player core, on the host, by subject: the glue and the
//! engine are played by a small simulation (`page`) that checks, on every effect, what a page
//! would see.

mod link;
mod messages;
mod page;
mod random;
mod resume;
mod words;
mod written;
