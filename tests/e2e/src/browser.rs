//! Runs the Chromium scripts of `tests/browser/`.

use std::path::Path;

use crate::{ensure, TestResult};

/// Runs a browser script from `tests/browser/` with `args` and parses the JSON it prints; fails
/// if the page reported errors (`pageErrors`).
pub async fn run_browser_script(script: &str, args: &[&str]) -> TestResult<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/browser")
        .join(script);
    let output = tokio::process::Command::new("node")
        .arg(path)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("node: {e}"))?;
    ensure!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{script} printed no JSON: {e}"))?;
    let errors = &report["pageErrors"];
    ensure!(
        errors.as_array().is_none_or(|e| e.is_empty()),
        "{script}: page errors: {errors}"
    );
    Ok(report)
}
