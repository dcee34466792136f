//! The ground truth the word timings are measured against: where espeak-ng, the local upstream's
//! voice, said each word (its library's word events, kept by the upstream in this process; the
//! relay only ever sees the WAV), placed in a message's samples and the app's text as the relay
//! places its own estimates. Shared by the word tests and `bench words`.

use std::time::Duration;

use groq_local::Stats;
use orpheus_protocol::{Markup, ServerMessage, WordTiming};
use orpheus_worker::heard::{heard_original, SegmentAudio};
use orpheus_worker::segment::{split_spans, FIRST_SEGMENT_CHARS, SEGMENT_MAX_CHARS};
use orpheus_worker::speech::{Lexicon, SpeechText};

use orpheus_worker::wav::WavReader;
use orpheus_worker::words::{baseline, estimate, Envelope, Timing};

use crate::{
    ensure, http_exchange, percentile, run_browser_script, Fixture, Listener, Relay, SampleApp,
    TestResult, TEST_KEY, TEST_SECRET,
};

/// The sample rate of the upstream's audio.
const RATE: f64 = 24_000.0;

/// The voices the word timings are measured in: espeak-ng stands in for them with two men and
/// two women, American and British, at 165, 190, 145 and 185 words a minute.
pub const VOICES: [&str; 4] = ["troy", "austin", "hannah", "diana"];

/// A word as espeak-ng said it in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrueWord {
    /// Its first sample in the message.
    pub start: u64,
    /// Its first character in the app's text.
    pub from: u64,
}

/// The words of message `text` (read as Markdown, the relay's default, with no lexicon) as
/// espeak-ng said them in `voice`, from the upstream's record of each segment it spoke (up to
/// the first it never said). The segments are the relay's own cut of the text, and a message's
/// audio is its segments' one after another.
pub fn true_words(stats: &Stats, text: &str, voice: &str) -> Vec<TrueWord> {
    let speech = SpeechText::of(text, Markup::Markdown, Lexicon::default());
    let spoken: Vec<char> = speech.spoken().chars().collect();
    let truths = stats.word_truth();
    let mut words = Vec::new();
    let mut offset = 0u64;
    for span in split_spans(speech.spoken(), SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS) {
        let input: String = spoken[span.clone()].iter().collect();
        let Some((_, truth)) = truths
            .iter()
            .rev()
            .find(|(said, truth)| *said == input && truth.voice == voice)
        else {
            // Never asked for (the message was stopped before): nothing after it was said.
            break;
        };
        for &(char_at, _, sample) in &truth.words {
            let said = span.start + char_at;
            words.push(TrueWord {
                start: offset + sample as u64,
                from: speech.original(said..said + 1).start as u64,
            });
        }
        offset += truth.samples as u64;
    }
    words
}

/// How many words apart the last word heard and the word really being said are, at a stop
/// whose play cursor was `played` (message samples): the last heard is the last of the
/// relay's `told` words that `heard_chars` of the app's text covers; the one really being said
/// is the told word holding the last true word whose start `played` passed. (Neither: 0.)
pub fn heard_off_by(
    told: &[WordTiming],
    truth: &[TrueWord],
    heard_chars: u64,
    played: u64,
) -> usize {
    let heard = told.iter().take_while(|w| w.to <= heard_chars).count();
    let said = truth
        .iter()
        .take_while(|w| w.start <= played)
        .last()
        .map_or(0, |t| told.iter().take_while(|w| w.from <= t.from).count());
    heard.abs_diff(said)
}

/// What the `boundary` events of `tests/browser/words.mjs` showed.
#[derive(Debug, Default)]
pub struct Boundaries {
    /// For each event, its time at the output less its word's true start there, in ms: the
    /// relay's estimate and the player's timing together.
    pub errors_ms: Vec<f64>,
    /// For each event, its time at the output less its word's start as the relay told it:
    /// the player's timing alone.
    pub player_ms: Vec<f64>,
    /// Events, and the words the relay told for messages that played to their end.
    pub fired: usize,
    pub told: usize,
    /// Told words of messages played to their end that fired no event.
    pub missing: usize,
    /// Events whose word does not come after the one before.
    pub out_of_order: usize,
    /// Events of the stopped message after the stop.
    pub after_stop: usize,
}

/// Reads a report of `tests/browser/words.mjs`, which spoke `texts` (text, voice) and then
/// stopped one message: each event against its word's start as told and as it truly was
/// (`truth` of a text and voice, in message samples at `rate`), either heard at the output when
/// the context's output clock reads the message's first sample's time plus the word's.
pub fn boundaries(
    report: &serde_json::Value,
    texts: &[(String, String)],
    truth: impl Fn(&str, &str) -> Vec<TrueWord>,
    rate: f64,
) -> Result<Boundaries, String> {
    let mut b = Boundaries::default();
    let runs = report["runs"].as_array().ok_or("no runs")?;
    for ((text, voice), run) in texts.iter().zip(runs) {
        let result = &run["result"];
        if result["reason"] != "done" {
            return Err(format!("{text:?} did not play to its end: {result}"));
        }
        let started = result["startedAt"].as_f64().ok_or("no startedAt")?;
        let events = run["events"].as_array().ok_or("no events")?;
        let told = result["words"].as_array().ok_or("no words in the result")?;
        let truth = truth(text, voice);
        let index = |v: &serde_json::Value| v["charIndex"].as_u64().unwrap_or(u64::MAX);
        let fired: Vec<u64> = events.iter().map(index).collect();
        b.fired += fired.len();
        b.told += told.len();
        b.missing += told.iter().filter(|w| !fired.contains(&index(w))).count();
        b.out_of_order += fired.windows(2).filter(|p| p[1] <= p[0]).count();
        for event in events {
            let from = index(event);
            let length = event["charLength"].as_u64().unwrap_or(0);
            let heard_at = event["heardAt"].as_f64().ok_or("no heardAt")?;
            let told_at = started + event["elapsedTime"].as_f64().ok_or("no elapsedTime")?;
            b.player_ms.push((heard_at - told_at) * 1000.0);
            let Some(word) = truth
                .iter()
                .find(|t| (from..from + length).contains(&t.from))
            else {
                continue;
            };
            let true_at = started + word.start as f64 / rate;
            b.errors_ms.push((heard_at - true_at) * 1000.0);
        }
    }
    let stopped = &report["stopped"];
    let stop_ms = stopped["stopMs"].as_f64().ok_or("no stopMs")?;
    let events = stopped["events"].as_array().ok_or("no stopped events")?;
    b.after_stop = events
        .iter()
        .filter(|e| e["wallMs"].as_f64().is_some_and(|t| t > stop_ms))
        .count();
    Ok(b)
}

/// A reply for the demo page's captions: markup the captions dim around the words they light.
pub const DEMO_REPLY: &str = "**Hello!** Here is the plan: pack *light*, leave early, and call me \
    from the station when you arrive. I will be waiting by the main entrance.";

/// Speaks `texts` (text, voice) in Chromium with the player, through the sample app (the
/// packed player installed as an app would) on the word timings' relay, then stops a long
/// message, then plays [`DEMO_REPLY`] from the demo page's own UI (`tests/browser/words.mjs`):
/// the boundaries it saw, and the whole report (the output's latency, the demo's captions).
pub async fn boundaries_in_chromium(
    fx: &Fixture,
    texts: &[(String, String)],
) -> TestResult<(Boundaries, serde_json::Value)> {
    let voiced = fx.voiced().await?;
    let out = Relay::log_dir(&fx.root);
    let relay_ws = voiced.relay.url.replacen("http", "ws", 1);
    let app = SampleApp::start(&out.join("sample-app-words"), &relay_ws, TEST_SECRET).await?;
    let spoken: Vec<serde_json::Value> = texts
        .iter()
        .map(|(text, voice)| serde_json::json!({"text": text, "voice": voice}))
        .collect();
    let scenario = serde_json::json!({
        "texts": spoken,
        "stop": {
            "text": orpheus_test_support::spoken_sentences().join(" "),
            "voice": "diana",
            "afterMs": 2500,
        },
        "demo": DEMO_REPLY,
    });
    let report = run_browser_script("words.mjs", &[&app.url, &scenario.to_string()]).await?;
    let found = boundaries(
        &report,
        texts,
        |text, voice| true_words(&voiced.upstream, text, voice),
        RATE,
    )?;
    Ok((found, report))
}

/// One stop's outcome: how many words apart the last word heard and the word being said were,
/// by the word timings and by the segment lengths (the relay's estimate before them).
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    pub by_words: usize,
    pub by_lengths: usize,
}

/// `stops` stops at random points of replies (three of the test corpus's, of 200 characters
/// or more) spoken in [`VOICES`] through the word timings' relay, by `listeners` listeners in
/// real time at once. A message that ends before its stop counts for nothing.
pub async fn stops(fx: &Fixture, stops: usize, listeners: usize) -> TestResult<Vec<Stop>> {
    let voiced = fx.voiced().await?;
    let texts: Vec<String> = orpheus_test_support::markdown_replies()
        .into_iter()
        .chain(orpheus_test_support::spoken_sentences())
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|three| three.join("\n\n"))
        .filter(|t| t.chars().count() >= 200)
        .collect();
    let listeners = listeners.clamp(1, stops.max(1));
    let mut tasks = Vec::new();
    for l in 0..listeners {
        let sid = format!("heard-{l}");
        let url = voiced.relay.session_url(&sid);
        let texts = texts.clone();
        let upstream = voiced.upstream.clone();
        let count = stops / listeners + usize::from(l < stops % listeners);
        tasks.push(tokio::spawn(async move {
            let mut rng = orpheus_test_support::rng(0x4EA2D + l as u64);
            let mut outcomes = Vec::new();
            for k in 0..count {
                let mut listener = Listener::connect_at(&url, &sid, 1.0, true).await?;
                let text = &texts[rng.usize(..texts.len())];
                let voice = VOICES[(l + k) % VOICES.len()];
                let id = format!("m{k}");
                let listen = Duration::from_millis(1_000 + rng.u64(..6_000));
                listener.client.speak(&id, text, Some(voice)).await?;
                if listener.listen(&id, listen).await?.is_some() {
                    continue;
                }
                let (end, _) = listener.stop_and_wait(&id, Duration::from_secs(30)).await?;
                let ServerMessage::End {
                    heard: Some(heard), ..
                } = end
                else {
                    return Err(format!("a v2 end without heard: {end:?}"));
                };
                let truth = true_words(&upstream, text, voice);
                let lengths = by_segment_lengths(&upstream, text, voice, heard.samples);
                outcomes.push(Stop {
                    by_words: heard_off_by(&listener.words, &truth, heard.chars, heard.samples),
                    by_lengths: heard_off_by(&listener.words, &truth, lengths, heard.samples),
                });
            }
            Ok::<_, String>(outcomes)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(outcomes)
}

/// What the relay heard by segment lengths (before word timings) at `played`: in the app's
/// text, from the lengths of the segments the upstream said.
fn by_segment_lengths(upstream: &Stats, text: &str, voice: &str, played: u64) -> u64 {
    let speech = SpeechText::of(text, Markup::Markdown, Lexicon::default());
    let spoken: Vec<char> = speech.spoken().chars().collect();
    let spans = split_spans(speech.spoken(), SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS);
    let truths = upstream.word_truth();
    let audio: Vec<SegmentAudio> = spans
        .iter()
        .map_while(|span| {
            let input: String = spoken[span.clone()].iter().collect();
            let (_, truth) = truths
                .iter()
                .rev()
                .find(|(said, t)| *said == input && t.voice == voice)?;
            Some(SegmentAudio {
                samples: truth.samples as u64,
                complete: true,
            })
        })
        .collect();
    heard_original(text, &speech, &spans, &audio, played)
}

/// Word start errors |estimated − true|, in ms, of the relay's estimate and of the
/// constant-rate baseline, over every word both the relay and espeak-ng found.
#[derive(Debug, Default)]
pub struct StartErrors {
    pub estimated: Vec<f64>,
    pub constant: Vec<f64>,
    /// Segments said.
    pub segments: usize,
    /// Words of the relay's that espeak-ng split or joined otherwise (no true start).
    pub unmatched: usize,
}

/// The word start errors for `texts` said in each of `voices`, segment by segment as the relay
/// cuts them, by an upstream of its own (espeak-ng, without Groq's delay). The estimate is the
/// relay's own code (`orpheus_worker::words`) on the upstream's WAV, taken in as the relay
/// takes it: its PCM in pieces as they arrive.
pub async fn start_errors(texts: &[&str], voices: &[&str]) -> TestResult<StartErrors> {
    let config = groq_local::Config {
        engine: groq_local::Engine::Espeak,
        ..Fixture::test_upstream()
    };
    let (addr, upstream) = groq_local::spawn(config).await.map_err(|e| e.to_string())?;
    let url = format!("http://{addr}");
    let mut errors = StartErrors::default();
    for voice in voices {
        for text in texts {
            for input in orpheus_test_support::relay_segments(text) {
                let pcm = speech(&url, voice, &input).await?;
                let truths = upstream.word_truth();
                let (_, truth) = truths
                    .iter()
                    .rev()
                    .find(|(said, t)| *said == input && t.voice == *voice)
                    .ok_or("no truth for a segment")?;
                let mut envelope = Envelope::new(RATE as u32);
                for piece in pcm.chunks(4096) {
                    envelope.push(piece);
                }
                let estimated = estimate(&input, &envelope);
                let constant = baseline(&input, pcm.len() as u64 / 2);
                errors.segments += 1;
                for (e, c) in estimated.iter().zip(&constant) {
                    match truth.words.iter().find(|w| w.0 == e.chars.start) {
                        Some(&(_, _, sample)) => {
                            errors.estimated.push(error_ms(e, sample));
                            errors.constant.push(error_ms(c, sample));
                        }
                        None => errors.unmatched += 1,
                    }
                }
            }
        }
    }
    Ok(errors)
}

fn error_ms(timing: &Timing, true_sample: usize) -> f64 {
    timing.start.abs_diff(true_sample as u64) as f64 * 1000.0 / RATE
}

/// The median and the 90th percentile of `ms`.
pub fn median_p90(ms: &[f64]) -> (f64, f64) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    (percentile(&sorted, 50.0), percentile(&sorted, 90.0))
}

/// The share of `ms` at most `most`, in %.
pub fn within(ms: &[f64], most: f64) -> f64 {
    ms.iter().filter(|e| e.abs() <= most).count() as f64 * 100.0 / ms.len().max(1) as f64
}

/// The PCM the upstream at `url` says `input` with in `voice`, out of its WAV as the relay
/// reads it.
async fn speech(url: &str, voice: &str, input: &str) -> TestResult<Vec<u8>> {
    let body = serde_json::json!({
        "model": "canopylabs/orpheus-v1-english", "voice": voice, "input": input,
        "response_format": "wav",
    })
    .to_string();
    let auth = format!("Bearer {TEST_KEY}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let answer = http_exchange(
        url,
        "POST",
        "/openai/v1/audio/speech",
        &headers,
        body.as_bytes(),
    )
    .await?;
    ensure!(answer.status == 200, "upstream status {}", answer.status);
    let mut wav = WavReader::new();
    let mut pcm = Vec::new();
    wav.push(&answer.body, &mut pcm)
        .map_err(|e| e.name().to_owned())?;
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(spans: &[(u64, u64, u64)]) -> Vec<WordTiming> {
        spans
            .iter()
            .map(|&(start, from, to)| WordTiming {
                start,
                end: start + 100,
                from,
                to,
            })
            .collect()
    }

    #[test]
    fn words_apart_are_counted_in_the_relays_words() {
        // "One two three": the relay's words, and espeak's.
        let told = told(&[(0, 0, 3), (100, 4, 7), (200, 8, 13)]);
        let truth = [
            TrueWord { start: 10, from: 0 },
            TrueWord { start: 90, from: 4 },
            TrueWord {
                start: 230,
                from: 8,
            },
        ];
        assert_eq!(heard_off_by(&told, &truth, 7, 95), 0, "both on \"two\"");
        assert_eq!(
            heard_off_by(&told, &truth, 3, 95),
            1,
            "heard ends a word early"
        );
        assert_eq!(heard_off_by(&told, &truth, 13, 95), 1, "a word late");
        assert_eq!(heard_off_by(&told, &truth, 0, 95), 2);
        assert_eq!(
            heard_off_by(&told, &truth, 0, 5),
            0,
            "nothing said, nothing heard"
        );
    }
}
