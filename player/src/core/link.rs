//! The link to the relay: it moves Idle → Connecting → Open → Ready; a drop goes to Backoff
//! and round again (jittered, capped), a fatal close or the app's shutdown ends in Closed.
//! While a message waits for its end the link is watched: a ping after silence, then the socket
//! given up as dead; an attempt not ready in time is given up and tried again.

use crate::prelude::*;

use orpheus_protocol::{is_refusal, EndReason, CLOSE_POLICY_VIOLATION, CLOSE_REPLACED, PING_FRAME};

use super::api::{Effect, LinkError, Seconds};
use super::message::{Message, Phase};
use super::PlayerCore;

/// The link to the relay. It moves Idle → Connecting → Open → Ready; a drop goes to Backoff
/// and round again; a fatal close or the app's shutdown ends in Closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Link {
    /// Not asked to connect yet.
    Idle,
    /// Waiting out a reconnect delay.
    Backoff,
    /// A socket is opening (a ticket is fetched, then the handshake), since `since`.
    Connecting { since: Seconds },
    /// Open, waiting for `ready`; the attempt began at `since`.
    Open { since: Seconds },
    /// `ready` received: frames may be sent.
    Ready,
    /// Closed for good, until `connect` again.
    Closed,
}

impl PlayerCore {
    /// When the connection attempt under way is given up, if one is.
    pub(super) fn connect_deadline(&self) -> Option<Seconds> {
        match self.link {
            Link::Connecting { since } | Link::Open { since } => {
                Some(since + self.config.connect_timeout)
            }
            _ => None,
        }
    }

    /// Whether a sent message waits for its `end` on an open socket.
    pub(super) fn watching(&self) -> bool {
        self.link == Link::Ready && self.messages().any(Message::awaits_end)
    }

    pub(super) fn on_connect(&mut self) {
        match self.link {
            Link::Idle | Link::Closed => {
                self.reconnect_attempts = 0;
                self.open();
            }
            // A pending reconnect happens now instead.
            Link::Backoff => self.open(),
            Link::Connecting { .. } | Link::Open { .. } | Link::Ready => {}
        }
    }

    pub(super) fn open(&mut self) {
        self.link = Link::Connecting { since: self.now };
        self.effects.push(Effect::Open);
    }

    /// Something arrived, or the watch starts afresh.
    pub(super) fn heard(&mut self) {
        self.last_heard = self.now;
        self.pinged = false;
    }

    /// Pings a quiet link, and gives up one that stayed silent too long, or that did not
    /// become ready in time.
    pub(super) fn watch_link(&mut self) {
        if self.connect_deadline().is_some_and(|at| self.now >= at) {
            self.give_up("the relay did not answer the connection");
            return;
        }
        if !self.watching() {
            return;
        }
        let silence = self.now - self.last_heard;
        if silence >= self.config.dead_after {
            self.give_up("no answer from the relay");
        } else if silence >= self.config.ping_after && !self.pinged {
            self.pinged = true;
            self.effects.push(Effect::Send(PING_FRAME.to_owned()));
        }
    }

    /// Gives the socket up as dead (`reason`): it is closed at once, and the link goes down as
    /// if it had closed without a code.
    pub(super) fn give_up(&mut self, reason: &str) {
        self.effects.push(Effect::Disconnect);
        self.on_closed(1006, reason);
    }

    pub(super) fn on_closed(&mut self, code: u16, reason: &str) {
        if matches!(self.link, Link::Idle | Link::Closed | Link::Backoff) {
            return;
        }
        let fatal = code == CLOSE_REPLACED || code == CLOSE_POLICY_VIOLATION || is_refusal(code);
        self.effects.push(Effect::LinkDown(LinkError {
            code,
            reason: reason.to_owned(),
            fatal,
        }));
        let lost = if code == CLOSE_REPLACED {
            EndReason::Replaced
        } else {
            EndReason::Interrupted
        };
        // The current message waits for the next socket: with protocol v2, playing on
        // meanwhile; not sent yet, with either.
        let v2 = self.resume_grace.is_some();
        let parked = self.current.take_if(|m| {
            !fatal && (v2 && m.awaits_end() || matches!(m.phase, Phase::Unsent { .. }))
        });
        self.lose_messages(lost, true);
        if let Some(mut m) = parked {
            m.parked_at.get_or_insert(self.now);
            self.current = Some(m);
        }
        if fatal {
            self.link = Link::Closed;
            return;
        }
        self.link = Link::Backoff;
        let exponent = self.reconnect_attempts.min(16);
        let ceiling = self
            .config
            .reconnect_base_ms
            .saturating_mul(1 << exponent)
            .min(self.config.reconnect_max_ms);
        // Full range jitter in the upper half: never two players in lockstep, never instant.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let after_ms = ceiling / 2 + self.jitter % (ceiling / 2 + 1);
        self.reconnect_attempts += 1;
        self.effects.push(Effect::Reconnect { after_ms });
    }
}
