//! End-to-end tests of the relay: real workerd via `wrangler dev`, real WebSockets, and the local
//! Groq-compatible upstream. One fixture is shared by all tests, which run one at a time so the
//! upstream's counters belong to the test that reads them. Tests are grouped by subject, one
//! module each; the list below runs them in order.

use std::path::Path;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use orpheus_e2e::{Fixture, TestResult};

mod admission;
mod browser;
mod cache;
mod deadlines;
mod http;
mod input;
mod leaks;
mod limits;
mod listener;
mod messages;
mod reliability;
mod scale;
mod sessions;
mod streaming;
mod texts;
mod upstream;
mod voices;
mod words;

use admission::*;
use browser::*;
use cache::*;
use deadlines::*;
use http::*;
use input::*;
use leaks::*;
use limits::*;
use listener::*;
use messages::*;
use reliability::*;
use scale::*;
use sessions::*;
use streaming::*;
use upstream::*;
use voices::*;
use words::*;

type TestFn = for<'a> fn(
    &'a Fixture,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = TestResult> + 'a>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|fx| Box::pin($name(fx))) as TestFn)),*]
    };
}

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: tests read the shared upstream's counters.
    args.test_threads = Some(1);
    let tests = tests![
        second_message,
        hundred_messages,
        rapid_interrupt,
        supersede,
        replace,
        disconnect_releases_upstream,
        long_texts,
        all_ten_voices,
        upstream_faults,
        upstream_error_body_is_capped,
        upstream_retry,
        bad_input,
        refused_upgrades,
        ticket_refusals,
        node_minted_ticket,
        limits,
        secure_defaults_and_dev_mode,
        many_sessions_at_once,
        stream_numbers_survive_a_reconnect,
        hibernation_round_trip,
        v2_resume_after_a_dropped_link,
        v2_resume_of_a_message_whose_link_went_dark_at_once,
        v2_resume_after_a_relay_restart,
        v2_flow_control_and_heard_text,
        v2_stop_on_a_slow_link,
        streamed_reply,
        streamed_first_audio,
        streamed_endings,
        deadlines_without_requests,
        v2_a_half_open_link_is_given_up_and_resumed,
        http_sdks,
        http_text_options,
        http_formats,
        http_clients,
        http_bad_input,
        http_upstream_errors,
        http_disconnect,
        segment_cache,
        chaos_client_leg,
        chaos_upstream_leg,
        eviction_mid_stream,
        soak_short,
        scale_short,
        burst_short,
        transcode_short,
        opus_short,
        browser_player,
        browser_through_chaos,
        browser_opus_on_a_slow_link,
        browser_lost_handshake,
        word_start_errors,
        words_through_the_relay,
        heard_at_stops,
        browser_boundaries,
        nothing_leaks,
    ];
    if args.list {
        let trials = tests
            .into_iter()
            .map(|(name, _)| Trial::test(name, || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture = match Fixture::start(&root, Fixture::test_upstream()) {
        Ok(fixture) => Arc::new(fixture),
        Err(e) => {
            eprintln!("e2e fixture failed to start: {e}");
            std::process::exit(1);
        }
    };
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let fx = fixture.clone();
            Trial::test(name, move || {
                fx.runtime.block_on(test(&fx)).map_err(Failed::from)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!("wrangler dev log: {}", fixture.relay.log_path.display());
    }
    drop(fixture);
    conclusion.exit();
}
