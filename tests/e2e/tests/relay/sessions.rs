//! A session's life across sockets: hibernation, reconnection.

use std::time::Duration;

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, Frame, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};

/// A session idles past hibernation (workerd evicts an idle object after about 10-25 s). The
/// exact ping is answered by the runtime without waking it; the next speak re-creates the object,
/// which restores the socket's attachment (stream numbers carry on) and speaks normally.
pub async fn hibernation_round_trip(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "hibernate").await?;
    let first = c.say("before", "Before the nap.", None).await?;
    ensure!(first.reason() == Some(EndReason::Done), "{:?}", first.end);
    let constructed = || fx.relay.log().matches("object event=constructed").count();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let before = constructed();
    c.send_text(r#"{"type":"ping"}"#).await?;
    ensure!(
        matches!(
            c.next(Duration::from_secs(5)).await?,
            Frame::Text(ServerMessage::Pong)
        ),
        "no pong while hibernated"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        constructed() == before,
        "the ping woke the hibernated object"
    );
    let text = "After the nap, the same socket still works.";
    let got = c.say("after", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "{:?}", got.end);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        constructed() == before + 1,
        "the object was not evicted and re-created ({} constructions)",
        constructed() - before
    );
    ensure!(
        got.stream() == first.stream().map(|s| s + 1),
        "stream {:?} after {:?}",
        got.stream(),
        first.stream()
    );
    check_bit_exact(&got.pcm, text)
}

/// A client that goes away and comes back (not a live replacement) gets new stream numbers:
/// they are never reused within a session, whatever happened to its sockets.
pub async fn stream_numbers_survive_a_reconnect(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "streams").await?;
    let first = c.say("a", "First.", None).await?;
    c.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(fx, "streams").await?;
    let second = c.say("b", "Second.", None).await?;
    ensure!(
        second.stream() > first.stream(),
        "stream {:?} after {:?}",
        second.stream(),
        first.stream()
    );
    Ok(())
}
