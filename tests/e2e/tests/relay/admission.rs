//! Who may connect: refused upgrades, tickets, origins, secure defaults.

use std::path::Path;
use std::time::{Duration, Instant};

use orpheus_e2e::{
    check_bit_exact, ensure, http_request, protocols_with, ticket, Client, Fixture, TestResult,
    OTHER_ORIGIN, TEST_ORIGIN, TEST_SECRET,
};
use orpheus_protocol::EndReason;

/// What is not a session upgrade at all is refused over HTTP, before any upgrade.
pub async fn refused_upgrades(fx: &Fixture) -> TestResult {
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut with_protocol = upgrade.to_vec();
    with_protocol.push(("Sec-WebSocket-Protocol", "orpheus.v1"));
    let before = fx.upstream.snapshot().requests;
    let too_long = format!("/v1/sessions/{}/ws", "a".repeat(65));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("/v1/sessions/bad.id/ws", with_protocol.clone(), 400),
        (&too_long, with_protocol.clone(), 400),
        ("/v1/sessions/fine/ws", upgrade.to_vec(), 400),
        ("/v1/sessions/fine/ws", vec![], 426),
        ("/nowhere", vec![], 404),
    ];
    for (path, headers, status) in cases {
        let (got, body) = http_request(fx.relay_url(), path, &headers).await?;
        ensure!(got == status, "{path}: {got} {body}");
    }
    ensure!(
        fx.upstream.snapshot().requests == before,
        "a refused upgrade reached the upstream"
    );
    Ok(())
}

/// Attempts a connection: `None` when admitted, else the close code it was refused with.
pub async fn refusal(
    base: &str,
    sid: &str,
    origin: Option<&str>,
    protocols: &str,
) -> TestResult<Option<u16>> {
    let url = format!("{}/v1/sessions/{sid}/ws", base.replacen("http", "ws", 1));
    orpheus_e2e::client::refusal(&url, protocols, origin).await
}

/// How many times the session objects were reached (each logs one upgrade line).
pub fn object_invocations(relay: &orpheus_e2e::Relay) -> usize {
    relay.log().matches("upgrade session=").count()
}

pub async fn wait_for_log(relay: &orpheus_e2e::Relay, what: &str, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    while !relay.log().contains(what) {
        ensure!(
            Instant::now() < deadline,
            "{what:?} not logged within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub async fn ticket_refusals(fx: &Fixture) -> TestResult {
    let sid = "guarded";
    let good = |origin: &str| protocols_with(&ticket(TEST_SECRET, sid, origin, 60));
    // Positive control: an admitted connection reaches the object and is logged as such.
    let before = object_invocations(&fx.relay);
    let c =
        Client::connect_with(&fx.session_url(sid), &good(TEST_ORIGIN), Some(TEST_ORIGIN)).await?;
    c.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while object_invocations(&fx.relay) == before {
        ensure!(
            Instant::now() < deadline,
            "the object's upgrade line never appeared in the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("no ticket", "orpheus.v1".into(), Some(TEST_ORIGIN), 4401),
        (
            "malformed",
            "orpheus.v1, orpheus.ticket.not-a-ticket".into(),
            Some(TEST_ORIGIN),
            4401,
        ),
        (
            "bad signature",
            protocols_with(&ticket("another-secret", sid, TEST_ORIGIN, 60)),
            Some(TEST_ORIGIN),
            4401,
        ),
        (
            "expired",
            protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, -120)),
            Some(TEST_ORIGIN),
            4401,
        ),
        (
            "too long-lived",
            protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, 3600)),
            Some(TEST_ORIGIN),
            4401,
        ),
        (
            "wrong session",
            protocols_with(&ticket(TEST_SECRET, "other", TEST_ORIGIN, 60)),
            Some(TEST_ORIGIN),
            4401,
        ),
        (
            "ticket for another allowed origin",
            good(TEST_ORIGIN),
            Some(OTHER_ORIGIN),
            4401,
        ),
        (
            "origin not allowed",
            good(TEST_ORIGIN),
            Some("http://evil.e2e.test"),
            4403,
        ),
        ("no origin", good(TEST_ORIGIN), None, 4403),
    ];
    let requests = fx.upstream.snapshot().requests;
    let invocations = object_invocations(&fx.relay);
    for (case, protocols, origin, code) in &cases {
        let got = refusal(fx.relay_url(), sid, *origin, protocols).await?;
        ensure!(
            got == Some(*code),
            "{case}: refused with {got:?}, expected {code}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        object_invocations(&fx.relay) == invocations,
        "a refused upgrade reached the Durable Object"
    );
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a refused upgrade reached the upstream"
    );

    // Replay: the Worker cannot know a ticket was used; the session's object refuses it.
    let once = good(TEST_ORIGIN);
    let c = Client::connect_with(&fx.session_url(sid), &once, Some(TEST_ORIGIN)).await?;
    c.close().await;
    let got = refusal(fx.relay_url(), sid, Some(TEST_ORIGIN), &once).await?;
    ensure!(got == Some(4401), "replayed ticket: refused with {got:?}");
    wait_for_log(
        &fx.relay,
        "result=refused reason=ticket_already_used",
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a refused upgrade reached the upstream"
    );
    ensure!(
        !fx.relay
            .log()
            .contains(&once["orpheus.v1, orpheus.ticket.".len()..]),
        "a ticket was logged"
    );
    Ok(())
}

/// The README's Node snippet mints tickets the relay accepts.
pub async fn node_minted_ticket(fx: &Fixture) -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/mint-ticket.mjs");
    let output = std::process::Command::new("node")
        .arg(&script)
        .args(["node-minted", TEST_ORIGIN])
        .env("SESSION_SECRET", TEST_SECRET)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    ensure!(
        output.status.success(),
        "mint-ticket.mjs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ticket = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    orpheus_e2e::record_ticket(&ticket);
    // The README shows the same function: it must not drift from the file that runs here.
    let source = std::fs::read_to_string(&script).map_err(|e| e.to_string())?;
    let start = source
        .find("export function mintTicket")
        .ok_or("no mintTicket in the example")?;
    let end = source[start..]
        .find("\n}\n")
        .ok_or("mintTicket not closed")?
        + start
        + 3;
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .map_err(|e| e.to_string())?;
    ensure!(
        readme.contains(&source[start..end]),
        "README.md's mintTicket differs from docs/examples/mint-ticket.mjs"
    );
    let url = fx.session_url("node-minted");
    let mut c = Client::connect_with(&url, &protocols_with(&ticket), Some(TEST_ORIGIN)).await?;
    let got = c.say("n", "Minted by node.", None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "{:?}", got.end);
    Ok(())
}

pub async fn secure_defaults_and_dev_mode(fx: &Fixture) -> TestResult {
    // The production relay has no development endpoint.
    let (status, _) = http_request(fx.relay_url(), "/_dev/ticket?session=x", &[]).await?;
    ensure!(
        status == 404,
        "/_dev/ticket outside development mode: {status}"
    );

    // No secret and no development mode: every connection is refused, and the log says why.
    let bare = fx.extra_relay("bare", &[], None)?;
    let requests = fx.upstream.snapshot().requests;
    let got = refusal(&bare.url, "s", Some(TEST_ORIGIN), "orpheus.v1").await?;
    ensure!(
        got == Some(4503),
        "no secret, no dev mode: refused with {got:?}"
    );
    wait_for_log(
        &bare,
        "SESSION_SECRET is not set: refusing every connection",
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        object_invocations(&bare) == 0,
        "the refused upgrade reached the Durable Object"
    );
    drop(bare);

    // Development mode with a secret: the dev endpoint mints a ticket the relay accepts.
    let dev = fx.extra_relay("dev", &[("ORPHEUS_DEV_MODE", "1")], Some("dev-secret"))?;
    let (status, body) = http_request(&dev.url, "/_dev/ticket?session=dev-demo", &[]).await?;
    ensure!(status == 200, "/_dev/ticket: {status} {body}");
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body}"))?;
    orpheus_e2e::record_ticket(json["ticket"].as_str().unwrap_or_default());
    let protocols: Vec<&str> = json["protocols"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    let mut c = Client::connect_with(
        &dev.session_url("dev-demo"),
        &protocols.join(", "),
        Some(&dev.url),
    )
    .await?;
    let text = "Development mode works with tickets too.";
    let got = c.say("d", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "dev: {:?}", got.end);
    check_bit_exact(&got.pcm, text)?;
    ensure!(
        fx.upstream.snapshot().requests == requests + 1,
        "one upstream request for one segment"
    );
    wait_for_log(&dev, "LOCAL DEVELOPMENT MODE", Duration::from_secs(5)).await
}
