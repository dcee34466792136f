//! Bad input: a clear error, nothing lost, the session still usable.

use std::time::Duration;

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, Frame, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};

pub async fn bad_input(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "bad-input").await?;
    let before = fx.upstream.snapshot().requests;
    let frame_errors: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid_json"),
        (r#"{"type":"sing"}"#.into(), "unknown_type"),
        (
            r#"{"type":"speak","text":"no id"}"#.into(),
            "invalid_message",
        ),
        (
            format!(
                r#"{{"type":"speak","id":"x","text":"{}"}}"#,
                "a".repeat(40_000)
            ),
            "frame_too_large",
        ),
    ];
    for (frame, code) in &frame_errors {
        c.send_text(frame.clone()).await?;
        match c.next(Duration::from_secs(5)).await? {
            Frame::Text(ServerMessage::Error { code: got, .. }) => {
                ensure!(got.as_str() == *code, "{code}: got {got:?}")
            }
            other => return Err(format!("{code}: got {other:?}")),
        }
    }
    c.send_binary(vec![1, 2, 3]).await?;
    match c.next(Duration::from_secs(5)).await? {
        Frame::Text(ServerMessage::Error { code, .. }) => {
            ensure!(code.as_str() == "binary_frame", "{code:?}")
        }
        other => return Err(format!("binary: got {other:?}")),
    }
    let rejected: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"type":"speak","id":"e","text":"   "}),
            "empty_text",
        ),
        (
            serde_json::json!({"type":"speak","id":"l","text":"a".repeat(4001)}),
            "text_too_long",
        ),
        (
            serde_json::json!({"type":"speak","id":"v","text":"hi","voice":"bob"}),
            "unknown_voice",
        ),
        (
            serde_json::json!({"type":"speak","id":"m","text":"hi","model":"whisper-1"}),
            "unknown_model",
        ),
        (
            serde_json::json!({"type":"speak","id":"x","text":"hi","voice":"troy","model":"canopylabs/orpheus-arabic-saudi"}),
            "voice_model_mismatch",
        ),
        (
            serde_json::json!({"type":"speak","id":"t","text":42}),
            "invalid_message",
        ),
    ];
    for (frame, code) in &rejected {
        c.send_text(frame.to_string()).await?;
        let id = frame["id"].as_str().unwrap();
        let got = c.until_end(id, Duration::from_secs(5)).await?;
        ensure!(
            got.reason() == Some(EndReason::Error) && got.error_code().as_deref() == Some(*code),
            "{code}: {:?}",
            got.end
        );
        ensure!(got.stream().is_none(), "a rejected speak has no stream");
    }
    ensure!(
        fx.upstream.snapshot().requests == before,
        "rejected input reached the upstream"
    );
    // Pings: the exact frame is answered by the runtime, any other spelling by the session.
    for ping in [r#"{"type":"ping"}"#, r#"{ "type" : "ping" }"#] {
        c.send_text(ping).await?;
        match c.next(Duration::from_secs(5)).await? {
            Frame::Text(ServerMessage::Pong) => {}
            other => return Err(format!("ping: got {other:?}")),
        }
    }
    // A string cut inside an emoji, as JSON.stringify writes it: spoken with U+FFFD, ended once.
    c.send_text(r#"{"type":"speak","id":"cut","text":"cut \ud83d here"}"#)
        .await?;
    let got = c.until_end("cut", Duration::from_secs(20)).await?;
    ensure!(got.reason() == Some(EndReason::Done), "ended {:?}", got.end);
    check_bit_exact(&got.pcm, "cut \u{FFFD} here")?;
    // Stopping an unknown id is a no-op; the session is still usable.
    c.stop("nobody").await?;
    let text = "Still here after all that.";
    let got = c.say("ok", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "ended {:?}", got.end);
    check_bit_exact(&got.pcm, text)
}
