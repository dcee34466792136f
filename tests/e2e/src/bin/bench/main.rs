//! `scripts/bench`: figures for the relay, measured in one run against the local upstream set to
//! Groq's pace (about 10 ms of generation per character before the first byte).
//!
//! 1. The overhead the relay adds: time from `speak` to the first audio frame through the relay,
//!    against the upstream's own time to first byte fetched directly, p50 and p99.
//! 2. Time to first audio for 100 and for 2,000 characters of text.
//! 3. (`listener`) Protocol v2 against v1 in the same run: upstream audio requested per stopped
//!    message against audio played, stop to `end` (also on a link slower than real time), audio
//!    held for a half-speed reader, and the silence a listener hears at a resume.
//! 4. (`written`) A reply written in small pieces (protocol v2 streaming text): first audio after
//!    its first sentence's last character, against the same sentence sent as a whole `speak`.
//!
//! Run only when named, each taking minutes (docs/scaling.md): `scale`, the load ramp (frame
//! lateness, CPU per second of audio and memory of one workerd for growing numbers of
//! sessions), `burst`, `transcode` (the HTTP endpoint's formats), `opus` (WebSocket listeners'
//! Opus beside PCM), `soak`, workerd's memory over a long run at a fixed number of sessions, and
//! `profile`, a CPU profile of workerd under load, summed up by function.
//!
//! 5. (`words`) The word timings against espeak-ng's own word events: word start error against
//!    the constant-rate baseline, heard text after stops at random points, and boundary events
//!    in Chromium.
//!
//! One module a mode: `relay`, `listener`, `written`, `player`, `words`, and `load` (`scale`,
//! `burst`, `transcode`, `opus`, `soak`, `profile`).

mod listener;
mod load;
mod player;
mod relay;
mod words;
mod written;

use std::path::Path;

use groq_local::Config as UpstreamConfig;
use orpheus_e2e::{percentile, Fixture, TestResult};

/// Groq generates about 100 characters per second.
pub const MS_PER_CHAR: u64 = orpheus_e2e::GROQ_MS_PER_CHAR;

/// The median and the 99th percentile of `ms`.
pub fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 50.0), percentile(&ms, 99.0))
}

/// A text of `chars` characters.
pub fn text_of(chars: usize) -> String {
    "Streaming speech should start fast, however long the text is. "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

/// The mean of `values`.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

const USAGE: &str = "usage: bench [relay|listener|written|player|words]   (all when none is named)
       bench scale [SESSIONS,SESSIONS,...] [SECONDS]   (the load ramp; default 50,100,200,400,500,800 for 60 s each)
       bench burst [SESSIONS]   (sessions connecting and speaking within one second; default 500)
       bench transcode [SESSIONS] [SECONDS]   (the HTTP endpoint's CPU per format; default 100 clients, 30 s each)
       bench opus [SESSIONS] [SECONDS]   (WebSocket listeners' CPU and bytes, PCM beside Opus; default 100 sessions, 30 s each)
       bench soak [SESSIONS] [MINUTES]   (memory over a long run; default 100 sessions for 30 minutes)
       bench profile [SESSIONS] [SECONDS]   (where workerd's CPU goes; default 200 sessions, 20 s)";

/// Prints how the bench is called and exits 2.
fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// Exits 0 if `result` is fine, else prints its failure and exits 1. (Each mode's fixture and
/// relays are dropped, and so stopped, before its result comes here.)
fn finish(result: TestResult) -> ! {
    if let Err(e) = result {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// The `i`th command-line argument as a number, `default` when absent; `None` when it is not one.
fn number_arg<T: std::str::FromStr>(i: usize, default: T) -> Option<T> {
    std::env::args()
        .nth(i)
        .map_or(Some(default), |s| s.parse().ok())
}

fn main() {
    let mode = std::env::args().nth(1);
    if mode.as_deref() == Some("serve") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let addr = orpheus_e2e::patterns::serve(0xB0B).await.unwrap();
            println!("{addr}");
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        });
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if mode.as_deref() == Some("scale") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let ramp: Option<Vec<usize>> = match args.first() {
            Some(list) => list.split(',').map(|n| n.parse().ok()).collect(),
            None => Some(vec![50, 100, 200, 400, 500, 800]),
        };
        let (Some(ramp), Some(seconds)) = (ramp, number_arg(3, 60)) else {
            usage()
        };
        finish(load::scale(&root, &ramp, seconds));
    }
    if mode.as_deref() == Some("burst") {
        let Some(sessions) = number_arg(2, 500) else {
            usage()
        };
        finish(load::burst(&root, sessions));
    }
    if mode.as_deref() == Some("transcode") {
        let (Some(sessions), Some(seconds)) = (number_arg(2, 100), number_arg(3, 30)) else {
            usage()
        };
        finish(load::transcode(&root, sessions, seconds));
    }
    if mode.as_deref() == Some("opus") {
        let (Some(sessions), Some(seconds)) = (number_arg(2, 100), number_arg(3, 30)) else {
            usage()
        };
        finish(load::opus(&root, sessions, seconds));
    }
    if mode.as_deref() == Some("profile") {
        let (Some(sessions), Some(seconds)) = (number_arg(2, 200), number_arg(3, 20)) else {
            usage()
        };
        finish(load::profile(&root, sessions, seconds));
    }
    if mode.as_deref() == Some("soak") {
        // The soak compares its second half with its first: at least two rounds.
        let (Some(sessions), Some(minutes @ 2..)) = (number_arg(2, 100), number_arg(3, 30)) else {
            usage()
        };
        finish(load::soak(&root, sessions, minutes));
    }
    let (relay, listen, write, player, words) = match mode.as_deref() {
        None => (true, true, true, true, true),
        Some("relay") => (true, false, false, false, false),
        Some("listener") => (false, true, false, false, false),
        Some("written") => (false, false, true, false, false),
        Some("player") => (false, false, false, true, false),
        Some("words") => (false, false, false, false, true),
        Some(_) => usage(),
    };
    let upstream = UpstreamConfig {
        ms_per_char: MS_PER_CHAR,
        ..Fixture::test_upstream()
    };
    let fixture = match Fixture::start(&root, upstream) {
        Ok(fixture) => fixture,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    let result = fixture.runtime.block_on(async {
        if relay {
            relay::run(&fixture).await?;
        }
        if listen {
            listener::listener_figures(&fixture).await?;
        }
        if write {
            written::written_figures(&fixture).await?;
        }
        if player {
            player::player_figures().await?;
        }
        if words {
            words::word_figures(&fixture).await?;
        }
        Ok::<(), String>(())
    });
    drop(fixture);
    finish(result);
}
