//! The runtime's clock, for the glue (the pure modules take the time as an argument).

use std::time::Duration;

use crate::time::Millis;

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> Millis {
    worker::js_sys::Date::now() as Millis
}

/// How long to wait for `deadline` (just past it), or a second when there is none, so that a
/// loop waiting on it looks again at least that often.
pub fn wait_for(deadline: Option<Millis>) -> Duration {
    deadline.map_or(Duration::from_secs(1), |d| {
        Duration::from_millis(d.saturating_sub(now()) + 1)
    })
}
