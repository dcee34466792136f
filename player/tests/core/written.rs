//! Protocol v2 text still being written (`speakStream`): appends at most every interval, then
//! `finish`; sent again after a resume; stopped; and whole, once finished, for a relay of v1.

use orpheus_player::core::{Config, ContextState, Input, ReportKind};
use orpheus_protocol::{ClientMessage, EndReason};

use crate::page::Page;

#[test]
fn v2_written_text_goes_out_in_appends_at_most_every_interval_then_finish() {
    let mut p = Page::v2();
    let interval = Config::default().append_interval;
    p.open("m", "");
    let from = p.sent.len() - 1;
    assert!(matches!(
        p.sent_since(from)[..],
        [ClientMessage::Speak { more: true, .. }]
    ));
    // A model's tokens, 5 ms apart: coalesced.
    for token in ["Hel", "lo ", "the", "re.", " How", " are", " you?"] {
        p.now += 0.005;
        p.feed(Input::Append {
            id: "m".into(),
            text: token.into(),
        });
    }
    assert_eq!(
        p.sent_since(from + 1),
        vec![ClientMessage::Append {
            id: "m".into(),
            text: "Hel".into(),
            at: Some(0)
        }],
        "the first at once, the rest wait for the interval"
    );
    assert!(p
        .core
        .next_deadline()
        .is_some_and(|at| at <= p.now + interval));
    p.tick_by(interval);
    p.feed(Input::Finish { id: "m".into() });
    p.feed(Input::Finish { id: "m".into() });
    assert_eq!(
        p.sent_since(from + 2),
        vec![
            ClientMessage::Append {
                id: "m".into(),
                text: "lo there. How are you?".into(),
                at: Some(3)
            },
            ClientMessage::Finish { id: "m".into() }
        ],
        "coalesced, then finish once"
    );
    p.feed(Input::Append {
        id: "m".into(),
        text: "ignored".into(),
    });
    p.tick_by(1.0);
    assert_eq!(p.sent.len(), from + 4, "nothing after finish");
}

#[test]
fn v2_written_text_waits_for_ready_and_goes_again_whole_after_a_resume() {
    let mut p = Page::unconnected();
    p.feed(Input::Context(ContextState::Running));
    p.open("m", "Hi");
    p.feed(Input::Append {
        id: "m".into(),
        text: " there.".into(),
    });
    assert!(p.sent.is_empty(), "not connected yet");
    p.feed(Input::Connect);
    p.feed(Input::Opened);
    p.ready_v2();
    assert_eq!(
        p.sent_since(0),
        vec![
            ClientMessage::Speak {
                id: "m".into(),
                text: "Hi".into(),
                voice: None,
                model: None,
                more: true,
                cache: true,
                markup: None,
                encoding: None,
            },
            ClientMessage::Append {
                id: "m".into(),
                text: " there.".into(),
                at: Some(2)
            }
        ]
    );
    p.start("m", 1);
    p.drop_link();
    p.feed(Input::Append {
        id: "m".into(),
        text: " More".into(),
    });
    p.feed(Input::Finish { id: "m".into() });
    let from = p.sent.len();
    p.reconnect_v2();
    let resent = p.sent_since(from);
    assert!(
        matches!(resent[0], ClientMessage::Resume { .. }),
        "{resent:?}"
    );
    assert_eq!(
        resent[1..],
        [
            ClientMessage::Append {
                id: "m".into(),
                text: "Hi there. More".into(),
                at: Some(0)
            },
            ClientMessage::Finish { id: "m".into() }
        ],
        "all of it from 0: the relay skips what it has"
    );
}

#[test]
fn v2_a_written_speak_lost_with_the_link_goes_again_with_its_text() {
    let mut p = Page::v2();
    p.open("m", "One");
    p.feed(Input::Append {
        id: "m".into(),
        text: " two.".into(),
    });
    p.drop_link();
    p.reconnect_v2();
    let from = p.sent.len();
    p.end("m", None, EndReason::Interrupted, 0);
    assert_eq!(
        p.sent_since(from)[1..],
        [ClientMessage::Append {
            id: "m".into(),
            text: " two.".into(),
            at: Some(3)
        }],
        "the speak again, then what it lacked"
    );
    assert!(matches!(
        p.sent_since(from)[0],
        ClientMessage::Speak { more: true, .. }
    ));
    assert_eq!(p.reason("m"), None, "still going");
}

#[test]
fn v2_stop_ends_a_written_message_and_its_text_stops_going_out() {
    let mut p = Page::v2();
    p.open("m", "Start");
    p.feed(Input::Stop);
    let from = p.sent.len();
    p.feed(Input::Append {
        id: "m".into(),
        text: " more".into(),
    });
    p.feed(Input::Finish { id: "m".into() });
    p.tick_by(1.0);
    assert!(p.sent_since(from).is_empty());
    p.end("m", Some(1), EndReason::Stopped, 0);
    assert_eq!(p.reason("m"), Some(EndReason::Stopped));
}

#[test]
fn v2_text_of_a_message_no_longer_current_goes_nowhere() {
    let mut p = Page::v2();
    p.open("old", "One.");
    p.open("new", "Two.");
    let from = p.sent.len();
    p.feed(Input::Append {
        id: "old".into(),
        text: " Late.".into(),
    });
    p.feed(Input::Finish { id: "old".into() });
    p.tick_by(1.0);
    assert!(p.sent_since(from).is_empty(), "{:?}", p.sent_since(from));
}

#[test]
fn a_relay_of_protocol_1_gets_written_text_whole_once_it_is_finished() {
    let mut p = Page::new();
    p.open("m", "One");
    p.feed(Input::Append {
        id: "m".into(),
        text: " two.".into(),
    });
    p.tick_by(1.0);
    let from = p.sent.len();
    assert!(
        !p.sent_since(0)
            .iter()
            .any(|f| matches!(f, ClientMessage::Speak { .. })),
        "nothing before the text is complete"
    );
    p.feed(Input::Finish { id: "m".into() });
    assert_eq!(
        p.sent_since(from),
        vec![ClientMessage::Speak {
            id: "m".into(),
            text: "One two.".into(),
            voice: None,
            model: None,
            more: false,
            cache: true,
            markup: None,
            encoding: None,
        }]
    );
    p.start("m", 1);
    p.end("m", Some(1), EndReason::Done, 24_000);
    p.report(ReportKind::Drained, 1, 24_000);
    assert_eq!(p.reason("m"), Some(EndReason::Done));
}
