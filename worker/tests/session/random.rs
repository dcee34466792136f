//! Thousands of random event sequences; the harness asserts the client-visible invariants on
//! every effect, and each run ends by checking one end per speak and no upstream left open.

use std::collections::HashMap;

use orpheus_protocol::{EndReason, ServerMessage};
use orpheus_worker::session::{Config, FetchId, Input};

use crate::harness::{long_text, status, wav_body, Harness};

/// How far a simulated upstream response has been delivered.
struct Cursor {
    body: Vec<u8>,
    at: usize,
    responded: bool,
}

/// Thousands of random event sequences; the harness asserts the client-visible invariants on
/// every effect, and each run ends by checking one end per speak and no upstream left open.
#[test]
fn randomized_event_sequences_keep_the_invariants() {
    let mut rng = orpheus_test_support::rng(0x2545_F491_4F6C_DD1D);
    let mut next = move |n: u64| rng.u64(..n);
    let texts = [
        "Hi.",
        "Short one, then more.",
        &long_text(3),
        &long_text(9),
        "  ",
        "مرحبا بكم. كيف حالكم؟",
    ];
    let mut done_checked = 0;
    for _run in 0..3000 {
        let mut h = Harness::new(Config {
            hold_back_samples: next(300) as usize,
            ..Config::default()
        });
        let mut speaks = 0;
        let mut bodies: HashMap<FetchId, Cursor> = HashMap::new();
        for _step in 0..(10 + next(60)) {
            h.now += next(120);
            let live: Vec<FetchId> = {
                let mut v: Vec<_> = h.open_fetches.keys().copied().collect();
                v.sort();
                v
            };
            match next(13) {
                0 | 1 => {
                    speaks += 1;
                    let text = texts[next(texts.len() as u64) as usize];
                    h.speak(&format!("m{}", next(4)), text);
                }
                2 => h.text(&format!(r#"{{"type":"stop","id":"m{}"}}"#, next(4))),
                12 => {
                    // A reconnect: the old socket's message ends replaced.
                    h.connect();
                }
                3 => h.text(r#"{"type":"stop"}"#),
                4 => h.text(["{bad", r#"{"type":"ping"}"#, r#"{"type":"x"}"#][next(3) as usize]),
                5 => {
                    h.now += next(25_000);
                    h.feed(Input::Tick);
                }
                _ if live.is_empty() => {}
                k => {
                    let fetch = live[next(live.len() as u64) as usize];
                    let cursor = bodies.entry(fetch).or_insert_with(|| {
                        let (body, pcm) = wav_body(fetch, 1 + next(3000) as usize);
                        h.delivered.insert(fetch, pcm);
                        Cursor {
                            body,
                            at: 0,
                            responded: false,
                        }
                    });
                    if k == 11 {
                        h.delivered.remove(&fetch);
                        h.feed(Input::UpstreamFailed(fetch));
                    } else if !cursor.responded {
                        cursor.responded = true;
                        let code = [200, 200, 200, 201, 503, 429][next(6) as usize];
                        h.feed(Input::UpstreamHead(fetch, status(code, None)));
                    } else {
                        let end = (cursor.at + 1 + next(2000) as usize).min(cursor.body.len());
                        let chunk = cursor.body[cursor.at..end].to_vec();
                        let finished = end == cursor.body.len();
                        cursor.at = end;
                        h.feed(Input::UpstreamBody(fetch, &chunk));
                        if finished {
                            h.feed(Input::UpstreamEnd(fetch));
                        }
                    }
                }
            }
        }
        // Whatever is still active is stopped: afterwards every speak has exactly one end.
        h.text(r#"{"type":"stop"}"#);
        assert_eq!(h.ends().len(), speaks, "exactly one end per speak");
        assert!(h.open_fetches.is_empty(), "no upstream request left open");
        assert_eq!(h.session.active_stream(), None);
        for message in &h.texts {
            if let ServerMessage::End {
                stream: Some(s),
                reason: EndReason::Done,
                samples,
                ..
            } = message
            {
                assert_eq!(h.audio.get(s).map_or(0, |a| a.len() / 2) as u64, *samples);
                assert_eq!(
                    h.audio.get(s).cloned().unwrap_or_default(),
                    h.expected_audio(*s),
                    "bit-exact"
                );
                done_checked += 1;
            }
        }
        h.feed(Input::Disconnected(h.socket));
    }
    assert!(
        done_checked > 100,
        "the random walk reaches completed messages ({done_checked})"
    );
}
