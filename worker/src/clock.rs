//! The runtime's clock, for the glue (the pure modules take the time as an argument).

use std::pin::{pin, Pin};
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::Stream;
use futures_util::StreamExt;
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
    /// The next item of `incoming`, or `None` once `deadline` (just past it; a second from now
    /// when there is none) or an earlier one armed before has passed: then the caller ticks.
    pub async fn next_or_tick<S, T>(
        &mut self,
        incoming: &mut S,
        deadline: Option<Millis>,
    ) -> Option<T>
    where
        S: Stream<Item = T> + Unpin,
    {
        let deadline = deadline.unwrap_or_else(|| now() + IDLE_LOOK_MS);
        if self.armed.as_ref().is_some_and(|(at, _)| deadline < *at) {
            self.armed = None;
        }
        let (_, delay) = self.armed.get_or_insert_with(|| {
            let wait = Duration::from_millis(deadline.saturating_sub(now()) + 1);
            (deadline, Box::pin(Delay::from(wait)))
        });
        match select(incoming.next(), pin!(delay.as_mut())).await {
            Either::Left((item, _)) => item,
            Either::Right(_) => {
                self.armed = None;
                None
            }
        }
    }
}
