//! Limits: spending budgets, frame rates, and what happens before the stored state is known.

use orpheus_protocol::{EndReason, ErrorCode, ServerMessage, CLOSE_POLICY_VIOLATION};
use orpheus_worker::budget::BudgetLimits;
use orpheus_worker::session::{Config, Input, Stored};

use crate::harness::Harness;

#[test]
fn not_configured_makes_no_upstream_call() {
    let mut h = Harness::new(Config {
        upstream_configured: false,
        ..Config::default()
    });
    h.speak("m", "Hello.");
    assert_eq!(h.ends()[0].2, Some(ErrorCode::NotConfigured));
    assert!(h.fetch_order.is_empty());
}

#[test]
fn budget_refuses_without_an_upstream_call_and_carries_over() {
    let budget = BudgetLimits {
        messages_per_minute: 2,
        chars_per_minute: 1000,
        chars_per_day: 1000,
    };
    let config = Config {
        budget,
        ..Config::default()
    };
    let mut h = Harness::new(config.clone());
    for id in ["a", "b"] {
        h.speak(id, "Hello.");
        let stream = h.session.active_stream().unwrap();
        h.complete(*h.fetches_of(stream).last().unwrap(), 10, 100);
    }
    h.now += 5_000;
    h.speak("c", "Hello.");
    match h.last_end() {
        ServerMessage::End {
            id,
            reason: EndReason::Error,
            error: Some(e),
            stream: None,
            ..
        } => {
            assert_eq!(
                (id.as_str(), e.code, e.retry_after_s),
                ("c", ErrorCode::RateLimited, Some(55))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.fetch_order.len(),
        2,
        "no upstream call for the refused message"
    );
    // The object restarts with what was stored: refused too; after the window, it passes.
    let mut next = Harness::with_stored(config, h.stored.clone());
    next.now = h.now;
    next.speak("d", "Hi.");
    assert!(next.started.is_empty());
    next.now += 55_000;
    next.speak("e", "Hi.");
    assert_eq!(next.started.len(), 1);
}

#[test]
fn an_unknown_stored_state_refuses_until_it_is_read() {
    let mut h = Harness::with_stored(Config::default(), None);
    h.speak("m", "Hello.");
    match h.last_end() {
        ServerMessage::End { error: Some(e), .. } => {
            assert_eq!(
                (e.code, e.retry_after_s),
                (ErrorCode::RelayUnavailable, Some(1))
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        h.started.is_empty(),
        "no upstream call on an unknown budget"
    );
    assert_eq!(
        h.stored, None,
        "an unknown budget is never written over the stored one"
    );
    let stored = Stored {
        next_stream: 9,
        ..Stored::default()
    };
    h.feed(Input::Loaded(Box::new(stored)));
    h.speak("n", "Hello.");
    assert_eq!(h.session.active_stream(), Some(9));
    assert_eq!(h.stored.as_ref().unwrap().next_stream, 10);
}

#[test]
fn flooding_client_is_throttled_then_closed() {
    // Frames 1-5 pass, 6-10 are refused, the 11th within the same second closes.
    let mut h = Harness::new(Config {
        frames_per_second: 5,
        ..Config::default()
    });
    h.speak("m", "Hello.");
    for _ in 0..4 {
        h.text(r#"{"type":"ping"}"#);
    }
    assert_eq!(
        h.texts
            .iter()
            .filter(|m| **m == ServerMessage::Pong)
            .count(),
        4
    );
    h.text(r#"{"type":"ping"}"#);
    assert!(matches!(
        h.texts.last(),
        Some(ServerMessage::Error {
            code: ErrorCode::RateLimited,
            retry_after_s: Some(1),
            ..
        })
    ));
    let before = h.texts.len();
    for _ in 0..3 {
        h.text(r#"{"type":"ping"}"#);
    }
    assert_eq!(
        h.texts.len(),
        before,
        "further excess frames are dropped silently"
    );
    h.speak("over", "Too fast.");
    assert_eq!(
        h.ends().last().unwrap(),
        &(
            "over".into(),
            EndReason::Error,
            Some(ErrorCode::RateLimited)
        ),
        "an over-rate speak still ends once"
    );
    assert!(h.closed.is_empty());
    h.text(r#"{"type":"ping"}"#);
    assert_eq!(h.closed.get(&h.socket), Some(&CLOSE_POLICY_VIOLATION));
    assert!(h.attachments[&h.socket].closed);
    assert_eq!(h.ends().len(), 2);
    assert_eq!(
        h.ends()[1],
        ("m".into(), EndReason::Error, Some(ErrorCode::RateLimited)),
        "the active message still ends once"
    );
    assert!(h.open_fetches.is_empty());
}
