//! The runtime's clock, for the glue (the pure modules take the time as an argument).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use worker::Delay;

use crate::time::Millis;

/// With no deadline, a loop still looks again this often.
const IDLE_LOOK_MS: Millis = 1000;

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> Millis {
    worker::js_sys::Date::now() as Millis
}

/// One runtime timer for a loop's earliest deadline, kept from one turn to the next while no
/// earlier deadline appears: deadlines that move later (an upstream's stall timeout moves on
/// every chunk) cost a spare tick when the old one fires, rather than a new timer per event.
#[derive(Default)]
pub struct Timer {
    armed: Option<(Millis, Pin<Box<Delay>>)>,
}

impl Timer {
    /// Ready once `deadline` (just past it; a second from now when there is none) or an earlier
    /// one armed before has passed: then the caller ticks. The timer is spent by it.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Option<Millis>) -> Poll<()> {
        let deadline = deadline.unwrap_or_else(|| now() + IDLE_LOOK_MS);
        if self.armed.as_ref().is_some_and(|(at, _)| deadline < *at) {
            self.armed = None;
        }
        let (_, delay) = self.armed.get_or_insert_with(|| {
            let wait = Duration::from_millis(deadline.saturating_sub(now()) + 1);
            (deadline, Box::pin(Delay::from(wait)))
        });
        match delay.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
