//! What is said of Markdown, construct by construct; that text written in pieces is said exactly
//! as the whole text is; that no markup is said; and that every word said maps back to the
//! words of the app's text it comes from.

use super::*;

fn said(text: &str) -> String {
    SpeechText::of(text, Markup::Markdown, Lexicon::default())
        .spoken()
        .to_owned()
}

#[test]
fn the_issues_reply_is_read_as_meant() {
    assert_eq!(
        said(
            "**Bold** text, a list:\n- one\n- two\nand a link https://example.com/very/long/path."
        ),
        "Bold text, a list: one. two. and a link example.com."
    );
}

#[test]
fn each_construct_is_read_as_a_listener_should_hear_it() {
    let cases = [
        (
            "*em* and **strong** and ***both*** and ~~gone~~ and __under__",
            "em and strong and both and gone and under",
        ),
        ("# Title\nText", "Title. Text"),
        ("## Title ends here.\nNext", "Title ends here. Next"),
        ("> quoted line\n> > nested", "quoted line nested"),
        ("- one\n* two\n+ three", "one. two. three."),
        ("1. first\n2) second\n10. tenth", "first. second. tenth."),
        ("Steps\n1. open", "Steps. open."),
        (
            "See [the docs](https://x.example/a?b=c) now.",
            "See the docs now.",
        ),
        ("An ![old map](map.png) here.", "An old map here."),
        ("A [reference][1] link.", "A reference link."),
        ("Run `npm install` first.", "Run npm install first."),
        ("Code:\n```python\nprint('hi')\n```\nDone.", "Code: Done."),
        ("~~~\nnot said\n~~~\nsaid", "said"),
        ("<b>Bold</b> and a<br>break.", "Bold and abreak."),
        ("| a | b |\n|---|:-:|\n| c | d |", "a, b. c, d."),
        ("above\n\n---\n\nbelow", "above. below"),
        (
            "Visit https://www.example.com/path, or http://test.org.",
            "Visit example.com, or test.org.",
        ),
        (
            "See <https://example.org/guide> now.",
            "See example.org now.",
        ),
        ("Great 🎉🚀 work 👍🏽!", "Great work !"),
        (
            "[cheerful] Hello there! [whisper] quietly",
            "[cheerful] Hello there! [whisper] quietly",
        ),
        ("2 * 3 = 6 and a < b", "2 * 3 = 6 and a < b"),
        ("the snake_case name", "the snake case name"),
        ("- [x] done\n- [ ] todo", "done. todo."),
        ("Escaped \\*stars\\* stay.", "Escaped *stars* stay."),
        ("Para one.\n\nPara two", "Para one. Para two"),
        ("Heading\n=======\nText", "Heading. Text"),
    ];
    for (markdown, expected) in cases {
        assert_eq!(said(markdown), expected, "{markdown:?}");
    }
}

#[test]
fn plain_text_is_said_as_it_is() {
    let text = "**Not** markdown: - one [x] `two` https://example.com 🎉";
    let speech = SpeechText::of(text, Markup::Plain, Lexicon::default());
    assert_eq!(speech.spoken(), text);
    assert_eq!(speech.original(0..8), 0..8);
}

/// `text` said whole, and written in pieces of 1 to 5 characters.
fn whole_and_written(text: &str, seed: u64) -> (SpeechText, SpeechText) {
    let lexicon = Lexicon::new(
        [("Groq", "grok"), ("SQL", "sequel"), ("API", "A P I")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
    )
    .unwrap();
    let whole = SpeechText::of(text, Markup::Markdown, lexicon.clone());
    let mut written = SpeechText::new(Markup::Markdown, lexicon);
    let chars: Vec<char> = text.chars().collect();
    let mut rng = orpheus_test_support::rng(seed);
    let mut at = 0;
    let mut so_far = String::new();
    while at < chars.len() {
        let (piece, _) = orpheus_test_support::next_piece(&chars, at, &mut rng);
        at += piece.chars().count();
        so_far.push_str(&piece);
        let before = written.spoken().to_owned();
        written.read(&so_far, false);
        assert!(
            written.spoken().starts_with(&before),
            "what was said is never taken back: {before:?} then {:?}",
            written.spoken()
        );
    }
    written.read(&so_far, true);
    (whole, written)
}

#[test]
fn replies_written_in_pieces_are_said_as_the_whole_reply_is() {
    let replies = orpheus_test_support::markdown_replies();
    assert!(replies.len() >= 50, "{} replies", replies.len());
    for (i, reply) in replies.iter().enumerate() {
        for seed in [1, 2, 3] {
            let (whole, written) = whole_and_written(reply, seed * 100 + i as u64);
            assert_eq!(written.spoken(), whole.spoken(), "reply {i}, seed {seed}");
            assert_eq!(written.map, whole.map, "reply {i}, seed {seed}");
        }
    }
}

/// The markup a reply must not have said: markers, syntax, addresses.
fn markup_said(spoken: &str) -> Option<&'static str> {
    let patterns = [
        "*", "`", "|", "~", "_", "<", ">", "](", "[ ]", "[x]", "http", "www.", "://", "##", "=",
    ];
    patterns.into_iter().find(|p| spoken.contains(p))
}

#[test]
fn no_markup_of_a_reply_is_said() {
    for (i, reply) in orpheus_test_support::markdown_replies().iter().enumerate() {
        let spoken = said(reply);
        assert_eq!(markup_said(&spoken), None, "reply {i}: {spoken:?}");
        assert!(
            !spoken.chars().any(super::markdown::is_emoji),
            "reply {i}: an emoji is said: {spoken:?}"
        );
    }
}

#[test]
fn every_word_said_maps_back_to_the_word_it_comes_from() {
    for (i, reply) in orpheus_test_support::markdown_replies().iter().enumerate() {
        let speech = SpeechText::of(reply, Markup::Markdown, Lexicon::default());
        let original: Vec<char> = reply.chars().collect();
        let spoken: Vec<char> = speech.spoken().chars().collect();
        let mut at = 0;
        while at < spoken.len() {
            if !spoken[at].is_alphanumeric() {
                at += 1;
                continue;
            }
            let end = (at..spoken.len())
                .find(|&k| !spoken[k].is_alphanumeric())
                .unwrap_or(spoken.len());
            let word: String = spoken[at..end].iter().collect();
            let span = speech.original(at..end);
            let back: String = original[span.clone()]
                .iter()
                .filter(|c| !matches!(c, '*' | '_' | '~' | '`'))
                .collect();
            assert_eq!(back, word, "reply {i}: {word:?} maps to {span:?}");
            at = end;
        }
    }
}

#[test]
fn a_construct_still_open_is_held_back() {
    let mut speech = SpeechText::new(Markup::Markdown, Lexicon::default());
    speech.read("See [the do", false);
    assert_eq!(speech.spoken(), "See", "a link may still come");
    speech.read("See [the docs](https://exa", false);
    assert_eq!(speech.spoken(), "See");
    speech.read("See [the docs](https://example.com) now", false);
    assert_eq!(speech.spoken(), "See the docs now");
    speech.read("See [the docs](https://example.com) now.", true);
    assert_eq!(speech.spoken(), "See the docs now.");
    let mut fence = SpeechText::new(Markup::Markdown, Lexicon::default());
    fence.read("Code:\n```\nlet x = 1;\n", false);
    assert_eq!(fence.spoken(), "Code:");
    fence.read("Code:\n```\nlet x = 1;\n```\nDone", true);
    assert_eq!(fence.spoken(), "Code: Done");
}
