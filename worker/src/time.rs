//! Time as the relay's pure modules see it.

/// Milliseconds since the Unix epoch, as the runtime's clock reports them.
pub type Millis = u64;
