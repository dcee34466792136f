//! The segment cache as the session sees it: a request may be answered from the cache (its head
//! says so); such a segment spends no characters, and the `end` counts it. A `speak` with
//! `cache: false` asks for fresh answers only.

use orpheus_protocol::{EndReason, ServerMessage};
use orpheus_worker::budget::BudgetLimits;
use orpheus_worker::session::Config;
use orpheus_worker::upstream::UpstreamStatus;

use crate::harness::Harness;

const RATE: usize = 24_000;

fn cached() -> UpstreamStatus {
    UpstreamStatus {
        status: 200,
        cached: true,
        ..Default::default()
    }
}

/// 80 characters: two segments at the default lengths.
const TEXT: &str =
    "One moment please. I am looking that up for you right now, it will not be long.";

fn tight() -> Config {
    Config {
        budget: BudgetLimits {
            messages_per_minute: 30,
            chars_per_minute: 100,
            chars_per_day: 1_000,
        },
        ..Config::default()
    }
}

#[test]
fn cached_segments_spend_no_characters_and_the_end_counts_them() {
    let mut h = Harness::v2(tight());
    h.speak("a", TEXT);
    let fetches = h.fetches_of(1);
    assert_eq!(fetches.len(), 2);
    assert_eq!(
        h.cacheable, fetches,
        "every request may come from the cache"
    );
    for fetch in fetches {
        h.answer(fetch, cached(), RATE, 4096);
    }
    h.play_to_end(1, RATE);
    match h.last_end() {
        ServerMessage::End {
            reason: EndReason::Done,
            metrics: Some(m),
            ..
        } => assert_eq!(m.cache_hits, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.audio[&1], h.expected_audio(1), "served as it came");
    // The 80 characters were given back: another 80 fit in the minute's 100.
    h.speak("b", TEXT);
    h.play_to_end(2, RATE);
    assert_eq!(h.ends()[1], ("b".into(), EndReason::Done, None));
    h.speak("c", TEXT);
    assert_eq!(
        h.ends()[2].2,
        Some(orpheus_protocol::ErrorCode::RateLimited),
        "b came from the upstream: its characters count"
    );
}

#[test]
fn a_speak_may_refuse_the_cache() {
    let mut h = Harness::v2(Config::default());
    h.text(
        &serde_json::json!({"type": "speak", "id": "a", "text": TEXT, "cache": false}).to_string(),
    );
    assert_eq!(h.fetches_of(1).len(), 2);
    assert!(h.cacheable.is_empty(), "no request may come from the cache");
    h.play_to_end(1, RATE);
    match h.last_end() {
        ServerMessage::End {
            metrics: Some(m), ..
        } => assert_eq!(m.cache_hits, 0),
        other => panic!("{other:?}"),
    }
}
