//! Audio comparisons: what the relay sent, and what the browser played, against what the
//! upstream produced for the relay's segments.

use orpheus_test_support::relay_segments;

use crate::{TestResult, SAMPLES_PER_CHAR};

/// The PCM the upstream produces for `text` split the way the relay splits it.
pub fn expected_pcm(text: &str) -> Vec<u8> {
    relay_segments(text)
        .iter()
        .flat_map(|segment| groq_local::render_signal(segment, SAMPLES_PER_CHAR))
        .flat_map(i16::to_le_bytes)
        .collect()
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

/// Aligns captured playback with the source signal and returns (offset, largest difference).
pub fn compare_capture(captured: &[f32], text: &str) -> TestResult<(usize, f32)> {
    let expected: Vec<f32> = expected_pcm(text)
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let probe = 64.min(expected.len());
    let offset = (0..captured.len().saturating_sub(expected.len()) + 1)
        .find(|&at| (0..probe).all(|k| (captured[at + k] - expected[k]).abs() <= 1e-6))
        .ok_or("the source signal's start was not found in the capture")?;
    let played = &captured[offset..offset + expected.len()];
    let worst = played
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
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
