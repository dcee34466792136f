//! Random sequences of everything a page and a relay can do: every message completes exactly
//! once, whatever happens and even when nothing answers any more.

use orpheus_player::core::{Command, Input, ReportKind};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::page::Page;

/// A random walk of 5 to 60 steps, time moving on by up to 0.5 s before each: a new speak
/// (draws 0 and 1), a `start` of the latest message in a new stream (2), a tick of up to 12 s
/// (11), or, for draws 3 to 10, what `step` does with the latest message's id and stream.
/// Returns how many speaks it made and the last stream.
fn random_walk(
    p: &mut Page,
    rng: &mut orpheus_test_support::Rng,
    mut step: impl FnMut(&mut Page, &mut orpheus_test_support::Rng, u32, &str, u32),
) -> (u32, u32) {
    let (mut spoken, mut stream) = (0u32, 0u32);
    for _ in 0..rng.usize(5..60) {
        p.now += rng.f64() * 0.5;
        let id = format!("m{spoken}");
        match rng.u32(..12) {
            0 | 1 => {
                spoken += 1;
                p.speak(&format!("m{spoken}"), "Some text.");
            }
            2 => {
                stream += 1;
                p.start(&id, stream);
            }
            11 => p.tick_by(rng.f64() * 12.0),
            draw => step(p, rng, draw, &id, stream),
        }
    }
    (spoken, stream)
}

/// Random sequences of everything a page and a relay can do: every speak completes exactly
/// once by the end, and no stream is begun twice.
#[test]
fn randomized_sequences_complete_every_message_exactly_once() {
    let mut rng = orpheus_test_support::rng(0x5EED_0010);
    for _ in 0..2000 {
        let mut p = Page::new();
        let (spoken, _) = random_walk(&mut p, &mut rng, |p, rng, draw, id, stream| match draw {
            3 => p.end(id, Some(stream), EndReason::Done, 1000),
            4 => p.end(id, None, EndReason::Error, 0),
            5 => p.feed(Input::Stop),
            6 => p.report(ReportKind::Started, stream, 0),
            7 => p.report(ReportKind::Drained, stream, 1000),
            8 => p.report(ReportKind::Stopped, stream, 10),
            9 => p.feed(Input::Closed {
                code: [1006, 1000, 4000][rng.usize(..3)],
                reason: "",
            }),
            _ => {
                p.feed(Input::Connect);
                p.feed(Input::Retry);
                p.feed(Input::Opened);
                p.server(ServerMessage::ready(
                    "s",
                    orpheus_protocol::Limits::default(),
                    None,
                ));
            }
        });
        p.feed(Input::Shutdown);
        assert_eq!(
            p.completions.len(),
            spoken as usize,
            "every speak completes once"
        );
        let begins: Vec<u32> = p
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Begin { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect();
        let mut unique = begins.clone();
        unique.dedup();
        assert_eq!(unique, begins, "a stream is begun once");
    }
}

/// Random sequences of protocol v2 (drops mid-message, resumes, starved streams, attempts
/// that open and never become ready), then a world that never answers again (no socket
/// opens, no `end` comes, the engine reports its streams starved): every speak still
/// settles, exactly once, within the patience the player documents, without a shutdown.
#[test]
fn randomized_v2_sequences_settle_every_message_even_when_nothing_answers() {
    let mut rng = orpheus_test_support::rng(0x5EED_0011);
    for _ in 0..1000 {
        let mut p = Page::v2();
        let (spoken, stream) =
            random_walk(&mut p, &mut rng, |p, rng, draw, id, stream| match draw {
                3 => p.end(id, Some(stream), EndReason::Done, 48_000),
                4 => p.feed(Input::Stop),
                5 => p.report(ReportKind::Started, stream, 0),
                6 => p.report(ReportKind::Progress, stream, rng.u64(..24_000)),
                7 => p.report(ReportKind::Underrun, stream, 24_000),
                8 => p.drop_link(),
                9 => {
                    p.feed(Input::Retry);
                    p.feed(Input::Opened);
                }
                _ => p.reconnect_v2(),
            });
        // Nothing answers from here on; reconnect timers fire, and a live stream is reported
        // starved, as the engine does.
        let mut waited = 0.0;
        while p.completions.len() < spoken as usize && waited < 60.0 {
            p.tick_by(0.25);
            waited += 0.25;
            p.feed(Input::Retry);
            p.report(ReportKind::Underrun, stream, 24_000);
        }
        assert_eq!(
            p.completions.len(),
            spoken as usize,
            "every speak settles with nothing answering: {:?}",
            p.core
        );
        assert!(
            waited <= 10.0 + 20.0 + 5.0 + 0.5,
            "within a connect attempt plus the resume patience: {waited} s"
        );
    }
}
