//! `bench listener`: protocol v2 against v1 in the same run: upstream audio requested per
//! stopped message against audio played, stop to `end` (also on a link slower than real time),
//! audio held for a half-speed reader, and the silence a listener hears at a resume.

use std::time::{Duration, Instant};

use orpheus_e2e::{ensure, Fixture, Listener, TestResult, SAMPLES_PER_CHAR, SLOW_LINK_SPEED};
use orpheus_protocol::ServerMessage;

use crate::{mean, summary, text_of};

const SLOW_STOP_RUNS: usize = 40;

const RATE: f64 = 24_000.0;

const STOP_RUNS: u64 = 5;

const RESUME_RUNS: usize = 3;

async fn listener(fx: &Fixture, v2: bool, sid: &str, speed: f64) -> TestResult<Listener> {
    if v2 {
        Listener::connect(fx, sid, speed).await
    } else {
        Listener::connect_v1(fx, sid, speed).await
    }
}

/// What a stop showed the listener.
struct Stopped {
    end: ServerMessage,
    /// From the stop to its `end`, in milliseconds.
    ms: f64,
    /// The audio that arrived between the stop and its `end` (it was on its way), in
    /// milliseconds.
    behind_ms: f64,
    /// Audio received per second from the first frame's arrival to the stop (what came after
    /// it), in samples: on a link slower than real time, how busy the relay kept it. None
    /// when no audio came before the stop.
    arrival_rate: Option<f64>,
}

/// Speaks `text` to `l`, listens for `for_at_most`, stops, and waits for the `end`.
async fn speak_and_stop(
    l: &mut Listener,
    text: &str,
    for_at_most: Duration,
) -> TestResult<Stopped> {
    l.speak_and_listen("m", text, for_at_most).await?;
    let before = l.received();
    let listened = l.first_audio_at.map(|first| first.elapsed().as_secs_f64());
    let (end, elapsed) = l.stop_and_wait("m", Duration::from_secs(60)).await?;
    Ok(Stopped {
        end,
        ms: elapsed.as_secs_f64() * 1000.0,
        behind_ms: (l.received() - before) as f64 * 1000.0 / RATE,
        arrival_rate: listened.map(|s| before.saturating_sub(l.first_frame_samples) as f64 / s),
    })
}

/// Protocol v2's figures, each against v1 in the same run.
pub async fn listener_figures(fx: &Fixture) -> TestResult {
    let seconds_of = |chars: usize| (chars * SAMPLES_PER_CHAR) as f64 / RATE;
    let text = text_of(2000);
    println!(
        "stopped messages: 2,000 characters ({:.0} s of audio) played in real time, stopped after 2-6 s, {STOP_RUNS} runs each:",
        seconds_of(2000)
    );
    for v2 in [false, true] {
        let (mut requested, mut played, mut ahead, mut stop_ms) = (vec![], vec![], vec![], vec![]);
        for run in 0..STOP_RUNS {
            let sid = format!("bench-stop-v{}-{run}", 1 + u8::from(v2));
            let mut l = listener(fx, v2, &sid, 1.0).await?;
            let before = fx.upstream.inputs().len();
            let listen = Duration::from_millis(2_000 + 1_000 * run);
            let ms = speak_and_stop(&mut l, &text, listen).await?.ms;
            // Requests the relay started just before the stop reach the upstream.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let chars: usize = fx.upstream.inputs()[before..]
                .iter()
                .map(|input| input.chars().count())
                .sum();
            requested.push(seconds_of(chars));
            played.push(l.played() as f64 / RATE);
            ahead.push(l.received().saturating_sub(l.played()) as f64 / RATE);
            stop_ms.push(ms);
            l.client.close().await;
        }
        println!(
            "  protocol v{}: upstream audio requested {:5.1} s per message for {:4.1} s played; \
             at the stop {:5.1} s received beyond the cursor; stop to end mean {:4.0} ms",
            1 + u8::from(v2),
            mean(&requested),
            mean(&played),
            mean(&ahead),
            mean(&stop_ms)
        );
    }

    println!(
        "stop on a link at 0.75x real time, 25 ms each way (a 50 ms round trip), 200 characters, stopped after 1.5-{:.1} s:",
        1.5 + 0.1 * (SLOW_STOP_RUNS - 1) as f64
    );
    let proxy = fx.slow_link().await?;
    for (v2, runs) in [(false, 1), (true, SLOW_STOP_RUNS)] {
        let (mut stop_ms, mut behind_ms, mut carried) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let sid = format!("bench-slow-v{}-{run}", 1 + u8::from(v2));
            let url = format!("ws://{}/v1/sessions/{sid}/ws", proxy.addr());
            let mut l = Listener::connect_at(&url, &sid, 1.0, v2).await?;
            let listen = Duration::from_millis(1_500 + 100 * run as u64);
            let stopped = speak_and_stop(&mut l, &text_of(200), listen).await?;
            stop_ms.push(stopped.ms);
            behind_ms.push(stopped.behind_ms);
            carried.extend(stopped.arrival_rate.map(|r| r / (SLOW_LINK_SPEED * RATE)));
            l.client.close().await;
        }
        let most_behind = behind_ms.iter().copied().fold(0.0, f64::max);
        let mut each: Vec<u64> = stop_ms.iter().map(|&ms| ms as u64).collect();
        each.sort_unstable();
        let (p50, p99) = summary(stop_ms);
        println!(
            "  protocol v{}: stop to end p50 {p50:6.0} ms   p99 {p99:6.0} ms   ({runs} runs); \
             audio on its way at the stop mean {:5.0} ms, most {most_behind:5.0} ms",
            1 + u8::from(v2),
            mean(&behind_ms)
        );
        if v2 {
            println!("    each, in ms, fastest first: {each:?}");
            // (Paced links only: v1's one run sends frames of up to 16 KiB, a third of a
            // second each, too coarse to time this way.)
            println!(
                "    the link's rate carried from the first frame to the stop: mean {:.2} \
                 ({} stops with audio before them)",
                mean(&carried),
                carried.len()
            );
        }
    }

    let long = text_of(4000);
    println!("a 4,000-character message to a reader at half speed, stopped after 10 s:");
    for v2 in [false, true] {
        let sid = format!("bench-half-v{}", 1 + u8::from(v2));
        let mut l = listener(fx, v2, &sid, 0.5).await?;
        let stopped = speak_and_stop(&mut l, &long, Duration::from_secs(10)).await?;
        let held = match stopped.end {
            ServerMessage::End {
                metrics: Some(m), ..
            } => format!("{:.1} s", m.held_back_ms as f64 / 1000.0),
            _ => "not reported (v1 holds nothing back)".to_owned(),
        };
        println!(
            "  protocol v{}: most received beyond the cursor {:5.1} s; most held in the relay {held}",
            1 + u8::from(v2),
            l.most_ahead as f64 / RATE,
        );
        l.client.close().await;
    }

    println!("resume after a cut link, at 3 s into a 2,000-character message, {RESUME_RUNS} runs:");
    let (mut outages, mut silences) = (vec![], vec![]);
    for run in 0..RESUME_RUNS {
        let sid = format!("bench-resume-{run}");
        let mut l = Listener::connect(fx, &sid, 1.0).await?;
        l.speak_and_listen("m", &text, Duration::from_secs(3))
            .await?;
        let cut = Instant::now();
        let had = l.received();
        let buffered = had.saturating_sub(l.played()) as f64 / RATE;
        l.cut_and_resume(fx, &sid, "m").await?;
        while l.received() <= had {
            ensure!(
                cut.elapsed() < Duration::from_secs(20),
                "no audio after the resume"
            );
            l.listen("m", Duration::from_millis(5)).await?;
        }
        let outage = cut.elapsed().as_secs_f64();
        outages.push(outage * 1000.0);
        silences.push((outage - buffered).max(0.0) * 1000.0);
        l.client.stop("m").await?;
        l.listen("m", Duration::from_secs(10)).await?;
        l.client.close().await;
    }
    println!(
        "  from the cut to new audio mean {:.0} ms (reconnect, ticket, resume); silence heard beyond it mean {:.0} ms",
        mean(&outages),
        mean(&silences)
    );
    Ok(())
}
