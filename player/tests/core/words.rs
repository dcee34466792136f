//! Protocol v2 words: the relay's word timings handed to the engine, a `boundary` for each word
//! as the engine's cursor passes its start (never after a stop), the words in the result; the
//! session's defaults (`configure`) told to every ready socket, a bad one refused up front.

use orpheus_player::core::{Boundary, Command, Input, ReportKind};
use orpheus_protocol::{EndReason, Markup, ServerMessage, WordTiming};

use crate::page::{sent_of, Page};

/// Words of 0.25 s each from sample 0, over `text`'s words (split at spaces).
fn timings(text: &str) -> Vec<WordTiming> {
    let mut at = 0;
    text.split(' ')
        .enumerate()
        .map(|(k, word)| {
            let from = at;
            at += word.chars().count() as u64 + 1;
            WordTiming {
                start: k as u64 * 6_000,
                end: (k as u64 + 1) * 6_000,
                from,
                to: from + word.chars().count() as u64,
            }
        })
        .collect()
}

/// The boundary of a word, fired by a report at the page's time (1 s: the page's clock stands).
fn boundary(id: &str, char_index: u64, char_length: u64, elapsed_ms: u64) -> Boundary {
    Boundary {
        id: id.into(),
        char_index,
        char_length,
        elapsed_ms,
        rendered_at: 1.0,
    }
}

#[test]
fn a_boundary_fires_as_the_cursor_passes_each_word() {
    let mut p = Page::v2();
    let text = "One two three four";
    p.speak("a", text);
    p.start("a", 1);
    let words = timings(text);
    p.server(ServerMessage::Words {
        stream: 1,
        words: words[..2].to_vec(),
    });
    assert_eq!(
        p.commands.last(),
        Some(&Command::Words {
            stream: 1,
            starts: vec![0, 6_000]
        }),
        "the engine learns where the words begin"
    );
    p.report_words(ReportKind::Started, 1, 0, 1);
    assert_eq!(p.boundaries, [boundary("a", 0, 3, 0)]);
    p.server(ServerMessage::Words {
        stream: 1,
        words: words[2..].to_vec(),
    });
    // One report may pass several words: each gets its boundary, in order.
    p.report_words(ReportKind::Progress, 1, 12_500, 3);
    assert_eq!(
        p.boundaries[1..],
        [boundary("a", 4, 3, 250), boundary("a", 8, 5, 500)]
    );
    // The same count again fires nothing.
    p.report_words(ReportKind::Progress, 1, 13_000, 3);
    assert_eq!(p.boundaries.len(), 3);
    p.end("a", Some(1), EndReason::Done, 24_000);
    p.report_words(ReportKind::Drained, 1, 24_000, 4);
    assert_eq!(p.boundaries[3], boundary("a", 14, 4, 750));
    let c = p.completion("a").unwrap();
    assert_eq!(c.words.len(), 4);
    assert_eq!((c.words[3].from, c.words[3].to), (14, 18));
    assert_eq!(c.rate, Some(24_000));
}

#[test]
fn no_boundary_after_a_stop() {
    let mut p = Page::v2();
    let text = "One two three four";
    p.speak("a", text);
    p.start("a", 1);
    p.server(ServerMessage::Words {
        stream: 1,
        words: timings(text),
    });
    p.report_words(ReportKind::Started, 1, 0, 1);
    p.feed(Input::Stop);
    // The fade-out still renders the next word's start.
    p.report_words(ReportKind::Stopped, 1, 6_100, 2);
    p.end("a", Some(1), EndReason::Stopped, 24_000);
    assert_eq!(p.boundaries, [boundary("a", 0, 3, 0)]);
    assert_eq!(p.completion("a").unwrap().reason, EndReason::Stopped);
}

#[test]
fn words_of_another_stream_are_not_this_messages() {
    let mut p = Page::v2();
    p.speak("a", "One two");
    p.start("a", 1);
    p.server(ServerMessage::Words {
        stream: 7,
        words: timings("One two"),
    });
    assert!(!p
        .commands
        .iter()
        .any(|c| matches!(c, Command::Words { .. })));
    p.report_words(ReportKind::Started, 1, 0, 2);
    assert!(p.boundaries.is_empty());
}

#[test]
fn the_sessions_defaults_go_to_every_ready_socket() {
    let mut p = Page::unconnected();
    p.feed(Input::Configure {
        markup: Some("plain".into()),
        lexicon: Some(vec![("Groq".into(), "grok".into())]),
    });
    assert!(p.sent.is_empty(), "no socket yet");
    p.feed(Input::Connect);
    p.feed(Input::Opened);
    p.ready_v2();
    let configure = r#"{"type":"configure","markup":"plain","lexicon":{"Groq":"grok"}}"#;
    assert_eq!(p.sent, [configure]);
    p.server(ServerMessage::Configured {
        markup: Markup::Plain,
        lexicon: 1,
    });
    assert_eq!(p.configured, [Ok(("plain".to_owned(), 1))]);
    p.drop_link();
    p.reconnect_v2();
    assert_eq!(
        sent_of(&p, "configure").len(),
        2,
        "told again on a new socket"
    );
}

#[test]
fn a_bad_markup_is_refused_before_the_relay() {
    let mut p = Page::v2();
    p.feed(Input::Configure {
        markup: Some("html".into()),
        lexicon: None,
    });
    assert!(p.sent.is_empty());
    let refused = p.configured[0].as_ref().unwrap_err();
    assert_eq!(refused.code, "invalid_message");
    // A lexicon the relay refuses comes back the same way, and no message is failed by it.
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.server(ServerMessage::Error {
        code: orpheus_protocol::ErrorCode::InvalidLexicon,
        message: "a lexicon holds at most 200 entries".into(),
        retry_after_s: None,
    });
    assert_eq!(
        p.configured[1].as_ref().unwrap_err().code,
        "invalid_lexicon"
    );
    p.end("a", Some(1), EndReason::Done, 100);
    p.report(ReportKind::Drained, 1, 100);
    assert_eq!(p.reason("a"), Some(EndReason::Done));
}

#[test]
fn a_relay_of_protocol_1_refuses_configure_at_once() {
    let mut p = Page::new();
    p.feed(Input::Configure {
        markup: Some("plain".into()),
        lexicon: None,
    });
    assert!(
        sent_of(&p, "configure").is_empty(),
        "never sent to a v1 relay"
    );
    assert_eq!(p.configured[0].as_ref().unwrap_err().code, "unknown_type");
    p.drop_link();
    p.feed(Input::Retry);
    p.feed(Input::Opened);
    p.connect_ready();
    assert_eq!(p.configured.len(), 1, "told once");
}
