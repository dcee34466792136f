//! Words, against real workerd: what is said of an app's Markdown and lexicon (WebSocket and
//! HTTP, the OpenAI SDK's `extra_body` included), where words are said (the `words` frames
//! against espeak-ng's own word events), what was heard at a stop, and the player's `boundary`
//! events in Chromium. Short forms of `scripts/bench words`.

use std::time::Duration;

use orpheus_e2e::words::{
    boundaries_in_chromium, median_p90, start_errors, stops, true_words, within, DEMO_REPLY,
};
use orpheus_e2e::{ensure, Client, Fixture, TestResult};
use orpheus_protocol::ServerMessage;

/// Word starts in two voices over a quarter of the sentences and an eighth of the replies: the
/// estimate's median within 50 ms and three times closer than the constant-rate baseline's
/// (espeak-ng is deterministic, so the figures are too).
pub async fn word_start_errors(_fx: &Fixture) -> TestResult {
    let texts: Vec<&str> = orpheus_test_support::spoken_sentences()
        .into_iter()
        .step_by(4)
        .chain(
            orpheus_test_support::markdown_replies()
                .into_iter()
                .step_by(8),
        )
        .collect();
    let errors = start_errors(&texts, &["troy", "hannah"]).await?;
    let (median, p90) = median_p90(&errors.estimated);
    let (base_median, base_p90) = median_p90(&errors.constant);
    println!(
        "{} words: estimate median {median:.0} ms, p90 {p90:.0} ms, within 50 ms {:.0}%; \
         baseline median {base_median:.0} ms, p90 {base_p90:.0} ms",
        errors.estimated.len(),
        within(&errors.estimated, 50.0)
    );
    ensure!(
        errors.estimated.len() >= 200,
        "{} words",
        errors.estimated.len()
    );
    // The bench holds the whole corpus to a p90 of 150 ms; a quarter of it spreads wider.
    ensure!(
        median <= 50.0 && p90 <= 180.0 && median * 3.0 <= base_median,
        "word starts: median {median:.0} ms, p90 {p90:.0} ms against the baseline's {base_median:.0} ms"
    );
    Ok(())
}

/// A Markdown reply through the relay: the upstream is asked for what should be said, every
/// word is told once, in order, before the `end`, in the app's own text; the session's lexicon
/// is applied and kept; a per-message `markup` of `plain` says the text as it is.
pub async fn words_through_the_relay(fx: &Fixture) -> TestResult {
    let voiced = fx.voiced().await?;
    let mut client = Client::connect_at(&voiced.relay.session_url("words"), "words", true).await?;
    let text = "**Groq** serves [Orpheus](https://example.com/orpheus) voices:\n\n\
                - fast\n- *clear*\n\nSee https://console.groq.com/docs/text-to-speech for more.";
    client
        .send_text(r#"{"type":"configure","lexicon":{"Groq":"grok"}}"#)
        .await?;
    match client.next(Duration::from_secs(5)).await? {
        orpheus_e2e::Frame::Text(ServerMessage::Configured { lexicon: 1, .. }) => {}
        other => return Err(format!("configure answered {other:?}")),
    }
    let received = client.say("m", text, Some("troy")).await?;
    ensure!(
        received.reason() == Some(orpheus_protocol::EndReason::Done),
        "{:?}",
        received.end
    );
    // The segments go out at once: in either order.
    let mut said: Vec<String> = voiced
        .upstream
        .word_truth()
        .iter()
        .rev()
        .take(2)
        .map(|(input, _)| input.clone())
        .collect();
    said.sort();
    ensure!(
        said == [
            "See console.groq.com for more.",
            "grok serves Orpheus voices: fast. clear."
        ],
        "the upstream was asked for {said:?}"
    );
    let chars: Vec<char> = text.chars().collect();
    let words: Vec<String> = received
        .words
        .iter()
        .map(|w| chars[w.from as usize..w.to as usize].iter().collect())
        .collect();
    ensure!(
        words
            == [
                "Groq", "serves", "Orpheus", "voices", "fast", "clear", "See", "console", "groq",
                "com", "for", "more"
            ],
        "words told: {words:?}"
    );
    ensure!(
        received.words.windows(2).all(|p| p[0].end <= p[1].start),
        "words in order: {:?}",
        received.words
    );
    // Each word within a few syllables of where espeak-ng said it.
    let truth = true_words(&voiced.upstream, text, "troy");
    for word in &received.words {
        let Some(t) = truth
            .iter()
            .find(|t| (word.from..word.to).contains(&t.from))
        else {
            continue;
        };
        let off_ms = word.start.abs_diff(t.start) * 1000 / 24_000;
        ensure!(off_ms <= 300, "{word:?} is {off_ms} ms from {t:?}");
    }
    // The lexicon outlives the socket; a message may ask for its text as it is.
    client.close().await;
    let mut client = Client::connect_at(&voiced.relay.session_url("words"), "words", true).await?;
    let plain = r#"{"type":"speak","id":"p","text":"*Groq*","markup":"plain","voice":"troy"}"#;
    client.send_text(plain).await?;
    client.until_end("p", Duration::from_secs(30)).await?;
    let last = voiced
        .upstream
        .word_truth()
        .last()
        .cloned()
        .ok_or("no input")?;
    ensure!(last.0 == "*grok*", "plain text was said as {:?}", last.0);
    Ok(())
}

/// Ten stops at random points through the relay: the heard text's last word is the word being
/// said or its neighbour (the bench's hundred stops give the figure).
pub async fn heard_at_stops(fx: &Fixture) -> TestResult {
    let outcomes = stops(fx, 10, 5).await?;
    let close = outcomes.iter().filter(|s| s.by_words <= 1).count();
    let by_lengths = outcomes.iter().filter(|s| s.by_lengths <= 1).count();
    println!(
        "{close} of {} stops heard to the word being said or its neighbour ({by_lengths} by segment lengths)",
        outcomes.len()
    );
    ensure!(
        outcomes.len() >= 8 && close * 10 >= outcomes.len() * 8,
        "heard: {outcomes:?}"
    );
    Ok(())
}

/// The player in Chromium, through the sample app, on the word timings' relay: every word
/// told fires one `boundary`, in order, when the output plays the word's start as the relay
/// told it, and none after a stop. (How close that is to where espeak-ng said the word is the
/// relay's estimate, printed here and measured in `word_start_errors`.)
pub async fn browser_boundaries(fx: &Fixture) -> TestResult {
    let texts: Vec<(String, String)> = [
        ("Sure, I can help with that. The next train leaves at 3.15 from platform nine, and Dr. Lee will meet you there.", "troy"),
        ("**Here is the plan:**\n\n1. Pack light.\n2. Leave *early*.\n3. Call me from the station.", "hannah"),
        ("Lightning strikes the earth about 100 times every second, mostly over land in the tropics.", "austin"),
    ]
    .iter()
    .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
    .collect();
    let (b, report) = boundaries_in_chromium(fx, &texts).await?;
    let latency = &report["outputLatency"];
    let abs = |ms: &[f64]| ms.iter().map(|e| e.abs()).collect::<Vec<_>>();
    let (player_median, player_p90) = median_p90(&abs(&b.player_ms));
    let (median, p90) = median_p90(&abs(&b.errors_ms));
    println!(
        "{} boundaries of {} words told; at the output (latency {} s), against the word's start \
         as told: {:.0}% within 50 ms (median {player_median:.0} ms, p90 {player_p90:.0} ms); \
         against espeak-ng's: {:.0}% (median {median:.0} ms, p90 {p90:.0} ms)",
        b.fired,
        b.told,
        latency,
        within(&b.player_ms, 50.0),
        within(&b.errors_ms, 50.0)
    );
    ensure!(
        b.missing == 0 && b.out_of_order == 0 && b.after_stop == 0 && b.fired == b.told,
        "boundaries: {b:?}"
    );
    ensure!(
        within(&b.player_ms, 50.0) >= 90.0,
        "boundaries off their told start: {:?}",
        b.player_ms
    );
    // The demo page, clicked: the word being said lit while it speaks, the markup around the
    // words dimmed, the reply shown as written, First audio shown before the end.
    let demo = &report["demo"];
    let now = demo["now"].as_str().unwrap_or_default();
    let unsaid = demo["unsaid"].as_array().cloned().unwrap_or_default();
    ensure!(
        demo["state"] == "speaking"
            && demo["first"].as_str().is_some_and(|f| f.ends_with(" s"))
            && !now.is_empty()
            && DEMO_REPLY.contains(now)
            && unsaid
                .iter()
                .any(|u| u.as_str().is_some_and(|u| u.contains("**")))
            && demo["shown"] == DEMO_REPLY,
        "the demo's captions: {demo}"
    );
    Ok(())
}
