//! Run last: neither the API key, nor a secret, nor any ticket, nor any text (or segment of
//! it) appears in any frame the relay sent or in any log of any relay of this run.

use orpheus_e2e::{ensure, Fixture, TestResult, TEST_SECRET};

pub async fn nothing_leaks(fx: &Fixture) -> TestResult {
    let ledger = orpheus_e2e::LEDGER.lock().map_err(|e| e.to_string())?;
    let logs = fx.all_logs();
    // Positive controls: the run produced what is being searched.
    ensure!(
        ledger.texts.len() > 50 && ledger.tickets.len() > 10,
        "ledger too small: {} texts, {} tickets",
        ledger.texts.len(),
        ledger.tickets.len()
    );
    ensure!(
        ledger.frames.len() > 100,
        "only {} frames captured",
        ledger.frames.len()
    );
    let main_log = logs
        .iter()
        .find(|(name, _)| name == "relay.log")
        .map(|(_, l)| l.as_str())
        .unwrap_or_default();
    ensure!(
        main_log.contains("end session=") && main_log.contains("speak session="),
        "the relay log lacks its own lines"
    );
    ensure!(
        main_log.contains("chars=2000"),
        "the relay log should carry lengths"
    );

    let mut secrets: Vec<(&str, String)> = vec![
        ("the API key", orpheus_e2e::TEST_KEY.to_owned()),
        ("the session secret", TEST_SECRET.to_owned()),
        ("the dev secret", "dev-secret".to_owned()),
    ];
    for key in orpheus_e2e::RELAY_API_KEYS {
        secrets.push(("an HTTP API key", key.to_owned()));
    }
    for ticket in &ledger.tickets {
        secrets.push(("a ticket", ticket.clone()));
        if let Some((_, signature)) = ticket.split_once('.') {
            secrets.push(("a ticket signature", signature.to_owned()));
        }
    }
    for text in ledger.texts.iter().filter(|t| t.chars().count() >= 12) {
        secrets.push(("a text", text.clone()));
        for segment in orpheus_test_support::relay_segments(text) {
            if segment.chars().count() >= 12 {
                secrets.push(("a segment of text", segment));
            }
        }
    }
    let frames = ledger.frames.join("\n");
    let mut places: Vec<(String, &str)> = logs
        .iter()
        .map(|(name, log)| (format!("log {name}"), log.as_str()))
        .collect();
    places.push(("frames sent to clients".to_owned(), &frames));
    for (place, haystack) in &places {
        for (what, secret) in &secrets {
            ensure!(
                !haystack.contains(secret.as_str()),
                "{what} appears in {place}"
            );
        }
    }
    println!(
        "checked {} secrets against {} logs and {} frames",
        secrets.len(),
        logs.len(),
        ledger.frames.len()
    );
    Ok(())
}
