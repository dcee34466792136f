//! `bench player`: the package as shipped (gzipped), and in headless Chromium the player beside
//! its peers (wavtools' stream player, pcm-player) fed the same signal.

use orpheus_e2e::TestResult;

/// The player's figures against two peers, in one headless Chromium run on the bench's pattern
/// server (`orpheus_e2e::patterns`), and the size of what the browser loads for it.
pub async fn player_figures() -> TestResult {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = [
        "index.js",
        "core.js",
        "orpheus_player.wasm",
        "orpheus_player_dsp.wasm",
        "worklet.js",
        "socket.js",
    ];
    let mut total = 0;
    let mut parts = Vec::new();
    for file in shipped {
        let bytes = std::fs::read(root.join("player/pkg").join(file))
            .map_err(|e| format!("{file}: {e}"))?;
        let gz = gzipped_len(&bytes);
        total += gz;
        parts.push(format!("{file} {gz}"));
    }
    println!(
        "player package as shipped, gzipped: {total} bytes ({})",
        parts.join(", ")
    );

    let server = orpheus_e2e::patterns::serve(0xB0B)
        .await
        .map_err(|e| e.to_string())?;
    let ws = format!("ws://{server}");
    let root_text = root.to_string_lossy();
    let report = orpheus_e2e::run_browser_script("figures.mjs", &[&ws, &root_text]).await?;
    println!(
        "players in headless Chromium, the same {} s signal: (a) 85 ms chunks at real-time pace, \
         (b) 1-12,000 byte chunks at stream time + 0-60 ms, (c) all within 1 s",
        orpheus_e2e::patterns::SIGNAL_S
    );
    println!(
        "  {:<17} {:>3} {:>7} {:>5} {:>8} {:>9} {:>12}",
        "player", "", "rate", "gaps", "lost ms", "latency", "main ms/s"
    );
    for run in report["runs"].as_array().ok_or("no runs")? {
        let num = |k: &str| run[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {:<17} ({}) {:>7} {:>5} {:>8.1} {:>6.1} ms {:>12.2}",
            run["kind"].as_str().unwrap_or("?"),
            run["pattern"].as_str().unwrap_or("?"),
            num("rate"),
            num("gaps"),
            num("lostMs"),
            num("latencyMs"),
            num("busyMsPerAudioS"),
        );
    }
    for run in report["runs"].as_array().into_iter().flatten() {
        let kind = run["kind"].as_str().unwrap_or("?");
        if kind.starts_with("orpheus-player") {
            let ms = |k: &str| run["busy"][k].as_f64().unwrap_or(f64::NAN);
            let calls = |k: &str| run["calls"][k].as_u64().unwrap_or(0);
            println!(
                "  {kind} ({}) main-thread ms in all: socket {:.1} ({} calls), worklet reports {:.1} ({}), timers {:.1} ({})",
                run["pattern"].as_str().unwrap_or("?"),
                ms("socket"),
                calls("socket"),
                ms("worklet"),
                calls("worklet"),
                ms("timers"),
                calls("timers")
            );
        }
    }
    for stop in report["stops"].as_array().ok_or("no stops")? {
        println!(
            "  {:<17} stop to silence at the output: {:.1} ms",
            stop["kind"].as_str().unwrap_or("?"),
            stop["stopToSilenceMs"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn gzipped_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("gzip input");
    child.wait_with_output().expect("gzip").stdout.len()
}
