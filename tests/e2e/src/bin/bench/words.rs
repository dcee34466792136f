//! `bench words`: the relay's word timings against espeak-ng's own word events (the local
//! upstream's voice says where it said each word; the relay, as with Groq, sees only the WAV).
//!
//! 1. Word start error |estimated − true| over assistant-style text (the Markdown replies and
//!    the spoken sentences of `orpheus-test-support`) in four voices (two men, two women; 145
//!    to 190 words a minute), against the constant-rate baseline in the same run. The estimate
//!    is the relay's own code (`orpheus_worker::words`) run on the upstream's WAV as the relay
//!    receives it.
//! 2. Heard text after 100 stops at random points, through the relay: how often the last word
//!    heard is the word really being said, or its neighbour; beside it, for the same stops, the
//!    estimate by segment lengths the relay made before word timings.
//! 3. Boundary events in Chromium (the player, the relay, the upstream at Groq's pace): how
//!    close to its word's true start at the output each fires, and that none is out of order,
//!    missing, or after a stopped message's end.

use orpheus_e2e::words::{Stop, VOICES};
use orpheus_e2e::{ensure, Fixture, TestResult};

/// Stops for the heard figures, by listeners at once.
const STOPS: usize = 100;
const LISTENERS: usize = 10;

pub async fn word_figures(fx: &Fixture) -> TestResult {
    start_errors().await?;
    heard_after_stops(fx).await?;
    boundaries(fx).await
}

/// Boundary events in Chromium over a dozen texts in the four voices, and a stop.
async fn boundaries(fx: &Fixture) -> TestResult {
    let texts: Vec<(String, String)> = orpheus_test_support::spoken_sentences()
        .into_iter()
        .step_by(3)
        .chain(
            orpheus_test_support::markdown_replies()
                .into_iter()
                .step_by(5),
        )
        .enumerate()
        .map(|(k, text)| (text.to_owned(), VOICES[k % VOICES.len()].to_owned()))
        .collect();
    let (b, report) = orpheus_e2e::words::boundaries_in_chromium(fx, &texts).await?;
    let latency = report["outputLatency"].as_f64().unwrap_or(0.0);
    let abs = |ms: &[f64]| ms.iter().map(|e| e.abs()).collect::<Vec<_>>();
    println!(
        "boundary events in Chromium ({} texts, the upstream at Groq's pace, output latency {:.0} ms): \
         {} fired of {} words told, {} missing, {} out of order, {} after a stop",
        texts.len(),
        latency * 1000.0,
        b.fired,
        b.told,
        b.missing,
        b.out_of_order,
        b.after_stop
    );
    for (name, ms) in [
        ("against the word's start as told", &b.player_ms),
        ("against espeak-ng's true start", &b.errors_ms),
    ] {
        let (median, p90) = orpheus_e2e::words::median_p90(&abs(ms));
        println!(
            "  at the output, {name:<34} within 50 ms {:5.1}%   median {median:4.0} ms   p90 {p90:4.0} ms",
            orpheus_e2e::words::within(ms, 50.0)
        );
    }
    Ok(())
}

/// The word start errors over the whole corpus (see [`orpheus_e2e::words::start_errors`]).
async fn start_errors() -> TestResult {
    let texts: Vec<&str> = orpheus_test_support::markdown_replies()
        .into_iter()
        .chain(orpheus_test_support::spoken_sentences())
        .collect();
    let errors = orpheus_e2e::words::start_errors(&texts, &VOICES).await?;
    ensure!(
        errors.estimated.len() >= 1000,
        "only {} words measured",
        errors.estimated.len()
    );
    println!(
        "word starts against espeak-ng's word events: {} words in {} segments, voices {} \
         (145 to 190 words a minute; {} words espeak-ng split otherwise left out)",
        errors.estimated.len(),
        errors.segments,
        VOICES.join(", "),
        errors.unmatched
    );
    let line = |name: &str, ms: &[f64]| {
        let (median, p90) = orpheus_e2e::words::median_p90(ms);
        println!(
            "  {name:<30}  median {median:5.0} ms   p90 {p90:5.0} ms   within 50 ms {:4.1}%",
            orpheus_e2e::words::within(ms, 50.0)
        );
        median
    };
    let median = line("the relay's estimate", &errors.estimated);
    let base = line("constant rate (the baseline)", &errors.constant);
    println!(
        "  the estimate is {:.1}x closer at the median",
        base / median.max(1.0)
    );
    Ok(())
}

/// Heard text after `STOPS` stops at random points (see [`orpheus_e2e::words::stops`]).
async fn heard_after_stops(fx: &Fixture) -> TestResult {
    let stops = orpheus_e2e::words::stops(fx, STOPS, LISTENERS).await?;
    ensure!(
        stops.len() * 10 >= STOPS * 9,
        "only {} of {STOPS} stops landed mid-message",
        stops.len()
    );
    println!(
        "heard text after {} stops at random points ({LISTENERS} listeners in real time, voices {}):",
        stops.len(),
        VOICES.join(", ")
    );
    let line = |name: &str, off: &dyn Fn(&Stop) -> usize| {
        let share = |most: usize| {
            stops.iter().filter(|s| off(s) <= most).count() as f64 * 100.0 / stops.len() as f64
        };
        let worst = stops.iter().map(off).max().unwrap_or(0);
        println!(
            "  {name:<20}  the last word heard is the word being said {:5.1}%, or its neighbour {:5.1}%; most apart {worst} words",
            share(0),
            share(1)
        );
    };
    line("by word timings", &|s| s.by_words);
    line("by segment lengths", &|s| s.by_lengths);
    Ok(())
}
