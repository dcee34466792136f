//! Deadlines against real workerd, whether or not an upstream request runs and whether or not
//! the object hibernated meanwhile: an open message left idle ends `text_timeout` once; one
//! whose appends come twelve seconds apart takes them all and ends `done`, bit-exact; a
//! reporting client whose link goes dark half-open has its socket closed and its message
//! parked within the documented bound, and resumes it `done`, bit-exact.

use std::time::{Duration, Instant};

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, Frame, Listener, TestResult};
use orpheus_protocol::{EndReason, ErrorCode, ServerMessage};

use crate::texts::english;

/// `TEXT_IDLE_MS` as production has it (the main relay's is shorter, for quick tests).
const DEFAULT_IDLE_MS: u64 = 15_000;

/// The time the relay gives a silent reporting client: `FLOW_WINDOW_MS` + 3 s.
const DEAD_LINK_MS: u64 = 5_000;

/// Opens message `m` with `text`, more to come, and waits: exactly one `end`, `text_timeout`,
/// after the idle limit and within two seconds of it.
async fn left_idle(url: &str, sid: &str, text: &str) -> TestResult<Duration> {
    let mut c = Client::connect_at(url, sid, true).await?;
    c.open("m", text, text).await?;
    let opened = Instant::now();
    let end = c
        .until_end("m", Duration::from_millis(DEFAULT_IDLE_MS + 2_000))
        .await?;
    let waited = opened.elapsed();
    ensure!(
        end.error_code().as_deref() == Some(ErrorCode::TextTimeout.as_str()),
        "{text:?} left idle ended {:?}",
        end.end
    );
    ensure!(
        waited >= Duration::from_millis(DEFAULT_IDLE_MS - 200),
        "{text:?} ended after {waited:?}, before the idle limit"
    );
    match c.next(Duration::from_secs(1)).await {
        Err(e) if e.starts_with("no frame within") => Ok(waited),
        other => Err(format!("{text:?}: after its end, {other:?}")),
    }
}

/// Writes `pieces` into one message, twelve seconds apart, on a socket that reads all it is
/// sent and reports nothing (so that the session has nothing to do between appends and
/// hibernates): it ends `done` with the upstream's audio for the segments it asked for.
async fn far_apart(fx: &Fixture, url: &str, sid: &str, pieces: &[&str]) -> TestResult {
    let whole = pieces.concat();
    let before = fx.upstream.inputs().len();
    let mut c = Client::connect_at(url, sid, true).await?;
    c.open("m", "", &whole).await?;
    let mut pcm = Vec::new();
    let mut end = None;
    for (i, piece) in pieces.iter().enumerate() {
        c.append("m", piece).await?;
        let until = Instant::now() + Duration::from_secs(if i + 1 < pieces.len() { 12 } else { 0 });
        while Instant::now() < until {
            match c.next(Duration::from_millis(100)).await {
                Ok(Frame::Audio { pcm: got, .. }) => pcm.extend(got),
                Ok(Frame::Text(ServerMessage::Start { .. } | ServerMessage::Words { .. })) => {}
                Ok(other) => return Err(format!("between appends: {other:?}")),
                Err(e) if e.starts_with("no frame within") => {}
                Err(e) => return Err(e),
            }
        }
    }
    c.finish("m").await?;
    while end.is_none() {
        match c.next(Duration::from_secs(30)).await? {
            Frame::Audio { pcm: got, .. } => pcm.extend(got),
            Frame::Text(ServerMessage::End { reason, .. }) => end = Some(reason),
            Frame::Text(ServerMessage::Start { .. } | ServerMessage::Words { .. }) => {}
            other => return Err(format!("after finish: {other:?}")),
        }
    }
    ensure!(end == Some(EndReason::Done), "ended {end:?}");
    let inputs = fx.upstream.inputs()[before..].to_vec();
    ensure!(
        pcm == orpheus_e2e::pcm_of_segments(&inputs),
        "the audio is not the upstream's, bit for bit ({inputs:?})"
    );
    Ok(())
}

/// On a relay with production's idle limit: messages opened with no text and with an
/// unfinished word, left idle, end `text_timeout` once within the limit and two seconds; one
/// written twelve seconds at a time ends `done`. All three at once, against one relay.
pub async fn deadlines_without_requests(fx: &Fixture) -> TestResult {
    let idle = DEFAULT_IDLE_MS.to_string();
    let origins = orpheus_e2e::TEST_ORIGIN;
    let relay = fx.extra_relay(
        "relay-idle",
        &[("TEXT_IDLE_MS", &idle), ("ALLOWED_ORIGINS", origins)],
        Some(orpheus_e2e::TEST_SECRET),
    )?;
    let [empty_url, word_url, apart_url] =
        ["idle-empty", "idle-word", "idle-apart"].map(|sid| relay.session_url(sid));
    let constructed = || relay.log().matches("object event=constructed").count();
    let before = constructed();
    let pieces = [
        "Hello there, this is the first sentence. ",
        "And this one came twelve seconds later. ",
        "The last one closes the reply.",
    ];
    let (empty, word, written) = tokio::join!(
        left_idle(&empty_url, "idle-empty", ""),
        left_idle(&word_url, "idle-word", "Hello"),
        far_apart(fx, &apart_url, "idle-apart", &pieces),
    );
    let (empty, word) = (empty?, word?);
    written?;
    println!(
        "idle with no text: text_timeout after {empty:?}; with an unfinished word: after \
         {word:?}; appends 12 s apart: done, bit-exact; objects constructed meanwhile: {}",
        constructed() - before
    );
    Ok(())
}

/// A reporting listener whose link goes dark half-open mid-message (the chaos proxy passes
/// nothing more, not even a close): the relay gives the link up within the bound, parks the
/// message, and the listener, reconnecting on its own, resumes it `done`, bit-exact.
pub async fn v2_a_half_open_link_is_given_up_and_resumed(fx: &Fixture) -> TestResult {
    let sid = "v2-half-open";
    let text = english(300);
    let proxy = fx.proxy(orpheus_chaos::Faults::none()).await?;
    let url = format!("ws://{}/v1/sessions/{sid}/ws", proxy.addr());
    let mut listener = Listener::connect_at(&url, sid, 1.0, true).await?;
    listener
        .speak_and_listen("m", &text, Duration::from_millis(1500))
        .await?;
    let silent = || fx.relay.log().matches("verdict=silent").count();
    let before = silent();
    proxy.half_open_all();
    let dark = Instant::now();
    // The listener keeps its socket, and hears nothing more.
    while silent() == before {
        ensure!(
            dark.elapsed() < Duration::from_millis(DEAD_LINK_MS + 2_000),
            "the relay did not give the dark link up within {} ms",
            DEAD_LINK_MS + 2_000
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let given_up = dark.elapsed();
    ensure!(
        fx.relay.log().matches("park session=").count() > 0,
        "the message was not parked"
    );
    // The listener gives its dead socket up (as the player does after 9 s of silence),
    // reconnects straight to the relay and resumes.
    listener.client.cut().await;
    listener.client = Client::connect_v2(fx, sid).await?;
    let played = listener.resume("m").await?;
    let end = listener.until_end("m", Duration::from_secs(60)).await?;
    ensure!(
        matches!(
            end,
            ServerMessage::End {
                reason: EndReason::Done,
                ..
            }
        ),
        "resumed: {end:?}"
    );
    check_bit_exact(&listener.pcm, &text)?;
    println!(
        "a half-open link given up {} ms after it went dark; resumed at sample {played}: \
         done, bit-exact",
        given_up.as_millis()
    );
    Ok(())
}
