//! What is said of the app's text (Markdown, the lexicon, the session's defaults), where its
//! words are said (`words`), and what was heard by them.

use orpheus_protocol::{ErrorCode, Markup, ServerMessage, Version};

use super::harness::{long_text, Harness};
use orpheus_worker::session::Config;

/// The app's text each word told says, in order.
fn said(h: &Harness, stream: u32, text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    h.words_of(stream)
        .iter()
        .map(|w| chars[w.from as usize..w.to as usize].iter().collect())
        .collect()
}

#[test]
fn every_word_is_told_once_in_order_in_the_apps_text() {
    let mut h = Harness::v2(Config::default());
    let text =
        "**Hello** there, [dear friend](https://example.com/a/b). A list:\n- one\n- `two`\n\n\
                ```\nlet x = 1;\n```\nSee https://example.com/very/long/path for more.";
    h.speak("m", text);
    assert_eq!(
        h.inputs_of(1).join(" "),
        "Hello there, dear friend. A list: one. two. See example.com for more."
    );
    h.play_to_end(1, 48_000);
    assert_eq!(
        said(&h, 1, text),
        [
            "Hello", "there", "dear", "friend", "A", "list", "one", "two", "See", "example", "com",
            "for", "more"
        ]
    );
    let words = h.words_of(1);
    for pair in words.windows(2) {
        assert!(pair[0].end <= pair[1].start, "in order, apart: {pair:?}");
        assert!(pair[0].to <= pair[1].from);
    }
    assert!(words.iter().all(|w| w.start < w.end));
    assert!(words.last().unwrap().end <= h.received(1));
    // Each word's timing went out before its audio was all sent: before the `end`.
    let told = h
        .texts
        .iter()
        .position(|m| matches!(m, ServerMessage::Words { .. }));
    let start = h
        .texts
        .iter()
        .position(|m| matches!(m, ServerMessage::Start { .. }));
    assert!(start < told);
}

#[test]
fn words_of_later_segments_start_where_their_segment_does() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", &long_text(8));
    h.play_to_end(1, 24_000);
    let words = h.words_of(1);
    assert_eq!(words.len(), 8 * 12);
    let segments = h.inputs_of(1);
    let mut first = 0;
    for (k, input) in segments.iter().enumerate() {
        let count = input.split_whitespace().count();
        let within = &words[first..first + count];
        let (from, to) = (k as u64 * 24_000, (k as u64 + 1) * 24_000);
        assert!(
            within.iter().all(|w| w.start >= from && w.end <= to),
            "segment {k}'s words within its samples"
        );
        first += count;
    }
    assert_eq!(first, words.len(), "every word of every segment");
}

#[test]
fn heard_ends_on_the_last_word_started() {
    let mut h = Harness::v2(Config::default());
    let text = "One two three four five six seven eight nine ten.";
    h.speak("m", text);
    h.deliver(1, 96_000);
    let words = h.words_of(1);
    assert_eq!(words.len(), 10);
    let sixth = words[5];
    // The listener plays on, reporting, to just past the sixth word's start.
    let target = sixth.start + 100;
    loop {
        let played = h.received(1).min(target);
        h.now += 250;
        h.played(1, played);
        if played == target {
            break;
        }
    }
    h.text(r#"{"type":"stop","id":"m"}"#);
    let ServerMessage::End { heard, .. } = h.last_end() else {
        unreachable!()
    };
    let heard = heard.expect("v2 ends say what was heard");
    assert_eq!(heard.chars, sixth.to, "up to the end of \"six\"");
    assert_eq!(&text[..heard.chars as usize], "One two three four five six");
}

#[test]
fn version_1_is_told_no_words() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "**Hello** there.");
    assert_eq!(h.inputs_of(1), ["Hello there."]);
    let fetch = h.fetches_of(1)[0];
    h.complete(fetch, 24_000, 4096);
    assert_eq!(h.version, Version::V1);
    assert!(h.words_of(1).is_empty());
    assert!(matches!(h.last_end(), ServerMessage::End { .. }));
}

#[test]
fn configure_sets_how_later_messages_are_read_and_is_kept() {
    let config = Config::default();
    let mut h = Harness::v2(config.clone());
    h.configure(serde_json::json!({"markup": "plain", "lexicon": {"Groq": "grok"}}));
    assert!(h.texts.contains(&ServerMessage::Configured {
        markup: Markup::Plain,
        lexicon: 1
    }));
    h.speak("m", "**Groq** is fast; groq too.");
    assert_eq!(h.inputs_of(1), ["**grok** is fast; groq too."]);
    // A message may ask otherwise.
    let frame =
        serde_json::json!({"type": "speak", "id": "n", "text": "**Groq**", "markup": "markdown"});
    h.text(&frame.to_string());
    assert_eq!(h.inputs_of(2), ["grok"]);
    // The defaults outlive the object.
    h.evict(config);
    h.connect();
    h.speak("o", "*Groq*");
    let stream = *h.fetch_order.keys().last().unwrap();
    assert_eq!(h.inputs_of(stream), ["*grok*"]);
}

#[test]
fn a_bad_configure_changes_nothing_and_the_session_goes_on() {
    let mut h = Harness::v2(Config::default());
    h.configure(serde_json::json!({"lexicon": {"Groq": "grok"}}));
    let too_many: serde_json::Map<String, serde_json::Value> =
        (0..201).map(|k| (format!("w{k}"), "said".into())).collect();
    for bad in [
        serde_json::json!({"lexicon": too_many}),
        serde_json::json!({"lexicon": {"two words": "x"}}),
        serde_json::json!({"lexicon": {"Groq": ""}}),
        serde_json::json!({"lexicon": {"Groq": "a\nb"}}),
        serde_json::json!({"markup": "html", "lexicon": {}}),
        serde_json::json!({"lexicon": {"Groq": 1}}),
    ] {
        h.configure(bad);
    }
    let errors = h.errors();
    assert_eq!(errors[..4], [ErrorCode::InvalidLexicon; 4]);
    assert_eq!(errors[4..], [ErrorCode::InvalidMessage; 2]);
    let messages: Vec<String> = h
        .texts
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(messages[0].contains("200 entries"), "{}", messages[0]);
    h.speak("m", "Groq");
    assert_eq!(h.inputs_of(1), ["grok"], "the lexicon set before stands");
}
