//! Every voice of both models.

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};

pub async fn all_ten_voices(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "voices").await?;
    let ServerMessage::Ready { voices, .. } = c.ready.clone() else {
        unreachable!()
    };
    let all: Vec<String> = voices.values().flatten().cloned().collect();
    ensure!(all.len() == 10, "{} voices announced", all.len());
    for voice in all {
        let text = format!("Hello from {voice}.");
        let got = c.say(&voice, &text, Some(&voice)).await?;
        ensure!(
            got.reason() == Some(EndReason::Done),
            "{voice} ended {:?}",
            got.end
        );
        check_bit_exact(&got.pcm, &text)?;
    }
    Ok(())
}
