//! Protocol v2 streaming text against real workerd: a reply written in small pieces is one
//! message, cut at good boundaries, bit-exact, ended once; its first sentence is heard as soon
//! as a whole `speak` of it would be; and every way such a message ends, ends it once with no
//! upstream request after.

use std::time::{Duration, Instant};

use orpheus_e2e::{
    ensure, Client, Fixture, Frame, Listener, TestResult, AGENT_REPLY as REPLY, AGENT_REPLY_FIRST,
};
use orpheus_protocol::{EndReason, ErrorCode, ServerMessage};

/// The texts the upstream was asked to speak since `before` requests.
fn inputs_since(fx: &Fixture, before: usize) -> Vec<String> {
    fx.upstream.inputs()[before..].to_vec()
}

fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A reply written 1 to 5 characters at a time, 20 to 50 ms apart: one start, one `end`
/// (`done`), the audio the upstream produced for the segments it was asked for, in order, each
/// segment at most 200 characters and cut where the text had a boundary.
pub async fn streamed_reply(fx: &Fixture) -> TestResult {
    let before = fx.upstream.inputs().len();
    let mut listener = Listener::connect(fx, "stream-reply", 8.0).await?;
    listener.write("m", REPLY, 11).await?;
    let end = listener.until_end("m", Duration::from_secs(60)).await?;
    ensure!(
        matches!(
            end,
            ServerMessage::End {
                reason: EndReason::Done,
                ..
            }
        ),
        "ended {end:?}"
    );
    let inputs = inputs_since(fx, before);
    ensure!(
        inputs[0] == AGENT_REPLY_FIRST,
        "the first sentence first: {inputs:?}"
    );
    ensure!(
        squash(&inputs.concat()) == squash(REPLY),
        "all of it, in order: {inputs:?}"
    );
    let mut rest = REPLY;
    for input in &inputs {
        ensure!(
            input.chars().count() <= 200,
            "{input:?} is over 200 characters"
        );
        let at = rest.find(input.as_str()).ok_or("segments out of order")?;
        rest = &rest[at + input.len()..];
        ensure!(
            rest.is_empty() || rest.starts_with(char::is_whitespace),
            "{input:?} was cut inside a word"
        );
    }
    let want = orpheus_e2e::pcm_of_segments(&inputs);
    ensure!(
        listener.pcm == want,
        "the audio is not the upstream's, bit for bit"
    );
    // One end: nothing more comes for it.
    ensure!(
        listener
            .listen("m", Duration::from_millis(300))
            .await?
            .is_none(),
        "a second end"
    );
    println!("{} segments: {inputs:?}", inputs.len());
    Ok(())
}

/// Median of what `measure` returns over three runs.
async fn median_of_three<F, Fut>(mut measure: F) -> TestResult<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = TestResult<Duration>>,
{
    let mut runs = Vec::new();
    for run in 0..3 {
        runs.push(measure(run).await?);
    }
    runs.sort();
    Ok(runs[1])
}

/// First audio of a written reply comes within 50 ms of the first sentence's own time at the
/// upstream, counted from the append that completed the sentence: against the same sentence
/// sent as a whole `speak`, measured in the same run.
pub async fn streamed_first_audio(fx: &Fixture) -> TestResult {
    let sentence = AGENT_REPLY_FIRST;
    let whole = median_of_three(|run| async move {
        let mut listener = Listener::connect(fx, &format!("first-whole-{run}"), 8.0).await?;
        let sent = Instant::now();
        listener.client.speak("w", sentence, None).await?;
        listener.listen("w", Duration::from_secs(10)).await?;
        let first = listener.first_audio_at.ok_or("no audio")?;
        Ok(first - sent)
    })
    .await?;
    let streamed = median_of_three(|run| async move {
        let mut listener = Listener::connect(fx, &format!("first-stream-{run}"), 8.0).await?;
        let sent = listener.write("s", REPLY, 20 + run as u64).await?;
        let cut = sentence.chars().count();
        let (_, completed) = sent
            .iter()
            .find(|(chars, _)| *chars >= cut)
            .ok_or("the sentence was never sent")?;
        let first = listener.first_audio_at.ok_or("no audio while writing")?;
        listener.client.stop("s").await?;
        Ok(first.saturating_duration_since(*completed))
    })
    .await?;
    println!("first audio: whole speak {whole:?}, written reply {streamed:?} after its sentence");
    ensure!(
        streamed <= whole + Duration::from_millis(50),
        "a written reply's first audio took {streamed:?}, a whole speak's {whole:?}"
    );
    Ok(())
}

/// Reads frames for `for_at_most`: every `end` and `error` that came, in order.
async fn answers(c: &mut Client, for_at_most: Duration) -> TestResult<Vec<ServerMessage>> {
    let until = Instant::now() + for_at_most;
    let mut got = Vec::new();
    while Instant::now() < until {
        match c.next(Duration::from_millis(50)).await {
            Ok(Frame::Text(m @ (ServerMessage::End { .. } | ServerMessage::Error { .. }))) => {
                got.push(m)
            }
            Ok(Frame::Closed(code)) => return Err(format!("closed {code:?}")),
            Ok(_) => {}
            Err(e) if e.starts_with("no frame within") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What `answers` must be: one `end` of `id` with `reason` (and error `code`), and the
/// `error` codes listed, in any order among them.
fn check_answers(
    got: &[ServerMessage],
    id: &str,
    reason: EndReason,
    code: Option<ErrorCode>,
    errors: &[ErrorCode],
) -> TestResult {
    let ends: Vec<_> = got
        .iter()
        .filter_map(|m| match m {
            ServerMessage::End {
                id: eid,
                reason,
                error,
                ..
            } => Some((eid.as_str(), *reason, error.as_ref().map(|e| e.code))),
            _ => None,
        })
        .collect();
    ensure!(ends == [(id, reason, code)], "{id}: ends {ends:?}");
    let got_errors: Vec<ErrorCode> = got
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    ensure!(got_errors == errors, "{id}: errors {got_errors:?}");
    Ok(())
}

/// Every way a written message ends: once, with its reason, and no upstream request after.
pub async fn streamed_endings(fx: &Fixture) -> TestResult {
    let mut c = Client::connect_v2(fx, "stream-endings").await?;
    let settle = Duration::from_millis(400);
    let not_open = ErrorCode::MessageNotOpen;

    // A stop between appends; what comes after it is refused.
    c.open("a", "The first sentence is here. Sec", REPLY)
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.stop("a").await?;
    let requests = fx.upstream.snapshot().requests;
    c.append("a", "ond sentence. Third.").await?;
    c.finish("a").await?;
    let got = answers(&mut c, settle).await?;
    check_answers(&got, "a", EndReason::Stopped, None, &[not_open, not_open])?;
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a request after the stop"
    );

    // A stop mid-audio.
    c.open("b", &REPLY[..120], REPLY).await?;
    loop {
        if let Frame::Audio { .. } = c.next(Duration::from_secs(5)).await? {
            break;
        }
    }
    c.stop("b").await?;
    let requests = fx.upstream.snapshot().requests;
    let got = answers(&mut c, settle).await?;
    check_answers(&got, "b", EndReason::Stopped, None, &[])?;
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a request after the stop"
    );

    // An append after finish, and to an id never opened.
    c.open("c", "Short one.", REPLY).await?;
    c.finish("c").await?;
    c.append("c", " Too late.").await?;
    c.append("nobody", "Hello.").await?;
    let got = answers(&mut c, Duration::from_secs(3)).await?;
    check_answers(&got, "c", EndReason::Done, None, &[not_open, not_open])?;

    // Never finished: it ends after the idle time (2 s here).
    let requests = fx.upstream.snapshot().requests;
    c.open("d", "Left open.", REPLY).await?;
    let got = answers(&mut c, Duration::from_secs(4)).await?;
    check_answers(
        &got,
        "d",
        EndReason::Error,
        Some(ErrorCode::TextTimeout),
        &[],
    )?;
    ensure!(
        fx.upstream.snapshot().requests == requests + 1,
        "only its sentence was requested"
    );

    // More text than the limit: the message ends, and the text over it is never requested.
    c.open("e", "", REPLY).await?;
    c.append("e", &"and more ".repeat(300)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests = fx.upstream.snapshot().requests;
    c.append("e", &"and more ".repeat(300)).await?;
    let got = answers(&mut c, settle).await?;
    check_answers(
        &got,
        "e",
        EndReason::Error,
        Some(ErrorCode::TextTooLong),
        &[],
    )?;
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a request after the text went over the limit"
    );

    // The session is still usable.
    let done = c.say("f", "Still here.", None).await?;
    ensure!(done.reason() == Some(EndReason::Done), "{:?}", done.end);
    fx.upstream_quiet(Duration::from_secs(5)).await
}
