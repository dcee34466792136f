//! Audio comparisons: what the relay sent, and what the browser played, against what the
//! upstream produced for the relay's segments.

use orpheus_test_support::relay_segments;

use crate::{TestResult, SAMPLES_PER_CHAR};

/// The PCM the upstream produces for `text` split the way the relay splits it.
pub fn expected_pcm(text: &str) -> Vec<u8> {
    pcm_of_segments(&relay_segments(text))
}

/// Checks relayed PCM against the upstream's, pointing at the first differing sample.
pub fn check_bit_exact(got: &[u8], text: &str) -> TestResult {
    let want = expected_pcm(text);
    if got == want.as_slice() {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(&want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "audio differs at byte {first}: got {} bytes, expected {}",
        got.len(),
        want.len()
    ))
}

/// What a player plays for `text` at a context of `rate` (the stream is 24 kHz): the source
/// itself at 24 kHz, else the source as the player's engine resamples it, rendered here by the
/// same Rust code the worklet runs.
pub fn expected_playback(text: &str, rate: u32) -> Vec<f32> {
    playback_of(&expected_pcm(text), rate)
}

/// The upstream's audio for these segments, in order.
pub fn pcm_of_segments(segments: &[String]) -> Vec<u8> {
    segments
        .iter()
        .flat_map(|segment| groq_local::render_signal(segment, SAMPLES_PER_CHAR))
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// What a player plays for a 24 kHz stream of `pcm` at a context of `rate`.
pub fn playback_of(pcm: &[u8], rate: u32) -> Vec<f32> {
    use orpheus_player_dsp::{event, Engine, Push};
    let samples = (pcm.len() / 2) as u64;
    let mut engine = Box::new(Engine::new());
    engine.configure(rate, 0.0);
    engine.begin(1, groq_local::SAMPLE_RATE);
    for (k, piece) in pcm.chunks(32 * 1024).enumerate() {
        let frame = orpheus_protocol::AudioFrame {
            flags: 0,
            stream: 1,
            offset: (k * 16 * 1024) as u32,
            pcm: piece,
        };
        assert_eq!(
            engine.push(&frame.encode()),
            Push::Accepted,
            "test texts fit the ring"
        );
    }
    engine.end(1, samples);
    let mut out = Vec::new();
    loop {
        let mut quantum = [0.0f32; 128];
        engine.render(&mut quantum);
        out.extend_from_slice(&quantum);
        if engine.take_events() & event::DRAINED != 0 {
            return out;
        }
    }
}

/// Aligns captured playback with the source signal and returns (offset, largest difference).
pub fn compare_capture(captured: &[f32], text: &str) -> TestResult<(usize, f32)> {
    compare_playback(captured, &expected_playback(text, groq_local::SAMPLE_RATE))
}

/// Aligns captured playback with what should have played and returns (offset, largest
/// difference).
pub fn compare_playback(captured: &[f32], expected: &[f32]) -> TestResult<(usize, f32)> {
    let start = expected.iter().position(|&v| v != 0.0).unwrap_or(0);
    let expected = &expected[start..];
    let probe = 64.min(expected.len());
    let offset = (0..captured.len().saturating_sub(expected.len()) + 1)
        .find(|&at| (0..probe).all(|k| (captured[at + k] - expected[k]).abs() <= 1e-6))
        .ok_or("the source signal's start was not found in the capture")?;
    let played = captured
        .get(offset..offset + expected.len())
        .ok_or_else(|| {
            format!(
                "the capture ends {} samples early",
                offset + expected.len() - captured.len()
            )
        })?;
    let worst = played
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if worst > 1e-6 {
        let at = played
            .iter()
            .zip(expected)
            .position(|(a, b)| (a - b).abs() > 1e-6)
            .expect("a difference");
        println!(
            "playback differs first at sample {at} of {} (offset {offset}): played {:?}, expected {:?}",
            expected.len(),
            &played[at.saturating_sub(2)..(at + 4).min(played.len())],
            &expected[at.saturating_sub(2)..(at + 4).min(expected.len())],
        );
    }
    Ok((offset, worst))
}

/// Decodes the base64 Float32 samples of a browser capture.
pub fn decode_capture(report: &serde_json::Value) -> TestResult<Vec<f32>> {
    use base64::Engine;
    let b64 = report["samples"].as_str().ok_or("no samples")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The largest magnitude in a capture (`report["samples"]`, starting at context frame
/// `report["firstFrame"]`) between two context times, in seconds.
pub fn loudest_between(
    report: &serde_json::Value,
    rate: f64,
    from_s: f64,
    to_s: f64,
) -> TestResult<f32> {
    let samples = decode_capture(report)?;
    let first = report["firstFrame"].as_f64().unwrap_or(0.0);
    let at = |s: f64| ((s * rate - first).max(0.0) as usize).min(samples.len());
    let (from, to) = (at(from_s), at(to_s));
    Ok(samples[from..to.max(from)]
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs())))
}

/// Decodes `bytes` with ffmpeg (a real decoder, as a client's), `input` being the options that
/// say what they are (none: ffmpeg finds out), to 16-bit mono PCM at `rate`.
pub async fn ffmpeg_decode(bytes: &[u8], input: &[&str], rate: u32) -> TestResult<Vec<i16>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rate = rate.to_string();
    let mut child = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input)
        .args([
            "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", &rate, "pipe:1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("ffmpeg: {e} (scripts/bootstrap installs it)"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let owned = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&owned).await;
    });
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut out = Vec::new();
    stdout
        .read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let _ = writer.await;
    let status = child.wait_with_output().await.map_err(|e| e.to_string())?;
    crate::ensure!(
        status.status.success(),
        "ffmpeg could not decode it: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(out
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// The lag (of `decoded` behind `reference`, within `max_lag` samples either way) at which the
/// two are most alike, found on three stretches (a quarter, half and three quarters in: on
/// one alone, a signal that repeats itself can look alike a period away), and their
/// normalised correlation there over the whole.
pub fn aligned_correlation(reference: &[i16], decoded: &[i16], max_lag: usize) -> (isize, f64) {
    let correlation = |lag: isize, range: std::ops::Range<usize>| {
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for i in range {
            let Some(&y) = usize::try_from(i as isize + lag)
                .ok()
                .and_then(|j| decoded.get(j))
            else {
                continue;
            };
            let (x, y) = (f64::from(reference[i]), f64::from(y));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        xy / (xx * yy).sqrt().max(1.0)
    };
    let stretches: Vec<_> = [1, 2, 3]
        .iter()
        .map(|quarter| {
            let at = reference.len() * quarter / 4;
            at.saturating_sub(max_lag)..(at + max_lag).min(reference.len())
        })
        .collect();
    let max_lag = max_lag as isize;
    let (lag, _) = (-max_lag..=max_lag)
        .map(|lag| {
            let alike: f64 = stretches.iter().map(|s| correlation(lag, s.clone())).sum();
            (lag, alike)
        })
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
    (lag, correlation(lag, 0..reference.len()))
}
