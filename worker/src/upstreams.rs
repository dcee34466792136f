//! The upstream requests of one owner (a session's Durable Object, or one HTTP response), and
//! the loop's wait: start a request, abort one, and wait for the next event of any of them or
//! for the core's next deadline, whichever comes first.
//!
//! Handles are shared (`Clone`): any handler of the object may start or abort a request while
//! another awaits [`Upstreams::next`]; a start wakes that wait. A request is released (its abort
//! handle dropped) with its final event or its abort; [`Upstreams::clear`] drops what is left,
//! which cancels the bodies of requests already aborted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use futures_util::stream::{LocalBoxStream, SelectAll, StreamExt};
use worker::AbortController;

use crate::clock::Timer;
use crate::segment_cache::SegmentCache;
use crate::session::{FetchId, FetchRequest};
use crate::time::Millis;
use crate::upstream_fetch::{self, UpstreamEvent};

/// What the wait ended with.
pub enum Next {
    /// An event of a request.
    Event(FetchId, UpstreamEvent),
    /// The deadline passed: tick the core.
    Deadline,
    /// Woken for another reason (a request started, the core handled an event elsewhere):
    /// look at the deadline again.
    Look,
}

/// Where requests go, and with what key.
pub struct Target {
    /// The upstream's base URL.
    pub base_url: String,
    /// The upstream's API key.
    pub api_key: String,
    /// The segment cache, unless it is off.
    pub cache: Option<SegmentCache>,
}

struct Inner {
    target: Target,
    /// Abort handles of the requests held: started, and neither final nor aborted.
    held: HashMap<FetchId, AbortController>,
    running: SelectAll<LocalBoxStream<'static, (FetchId, UpstreamEvent)>>,
    /// The wait in progress, woken when a request starts.
    waiting: Option<Waker>,
    /// Whether the wait was woken to look at the deadline again.
    woken: bool,
}

/// See the module docs.
#[derive(Clone)]
pub struct Upstreams {
    inner: Rc<RefCell<Inner>>,
}

impl Upstreams {
    /// No requests yet; they will go to `target`.
    pub fn new(target: Target) -> Self {
        Self {
            inner: Rc::new(RefCell::new(Inner {
                target,
                held: HashMap::new(),
                running: SelectAll::new(),
                waiting: None,
                woken: false,
            })),
        }
    }

    /// Starts `request`; its events come from [`Upstreams::next`].
    pub fn start(&self, request: &FetchRequest) {
        let mut inner = self.inner.borrow_mut();
        let controller = AbortController::default();
        let target = &inner.target;
        let events = upstream_fetch::events(
            request.fetch,
            &target.base_url,
            &target.api_key,
            &request.body,
            controller.signal(),
            target.cache.clone().filter(|_| request.cache),
        );
        inner.held.insert(request.fetch, controller);
        inner.running.push(events);
        drop(inner);
        self.wake();
    }

    /// Wakes the wait in progress, if any, to look at the deadline again ([`Next::Look`]).
    pub fn wake(&self) {
        let waiting = {
            let mut inner = self.inner.borrow_mut();
            inner.woken = true;
            inner.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
    }

    /// Aborts request `fetch` and releases it; a request already released is left alone.
    pub fn abort(&self, fetch: FetchId) {
        let controller = self.inner.borrow_mut().held.remove(&fetch);
        if let Some(controller) = controller {
            controller.abort();
        }
    }

    /// Aborts every request held.
    pub fn abort_all(&self) {
        let held: Vec<AbortController> = self
            .inner
            .borrow_mut()
            .held
            .drain()
            .map(|(_, c)| c)
            .collect();
        for controller in held {
            controller.abort();
        }
    }

    /// Whether a request is held.
    pub fn in_flight(&self) -> bool {
        !self.inner.borrow().held.is_empty()
    }

    /// Drops the streams of requests no longer held (their late events would be ignored).
    pub fn clear(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.held.is_empty() {
            inner.running = SelectAll::new();
        }
    }

    /// The next event of a request, [`Next::Deadline`] once `deadline` passed (a second from
    /// now when there is none; on `timer`, which belongs to the waiting task: a runtime timer
    /// wakes the task that armed it), or [`Next::Look`] if woken meanwhile. A final event
    /// releases its request.
    pub async fn next(&self, timer: &mut Timer, deadline: Option<Millis>) -> Next {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if let Poll::Ready(Some((fetch, event))) = inner.running.poll_next_unpin(cx) {
                if event.is_final() {
                    inner.held.remove(&fetch);
                }
                return Poll::Ready(Next::Event(fetch, event));
            }
            if std::mem::take(&mut inner.woken) {
                return Poll::Ready(Next::Look);
            }
            if timer.poll_expired(cx, deadline).is_ready() {
                return Poll::Ready(Next::Deadline);
            }
            inner.waiting = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
