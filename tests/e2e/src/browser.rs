//! Runs the Chromium scripts of `tests/browser/`, and the sample app that installs the player
//! from its packed npm tarball (`tests/sample-app/`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{ensure, TestResult};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a Node script of the repository with `args` and parses the JSON it prints last.
async fn run_node(script: &Path, args: &[&str]) -> TestResult<serde_json::Value> {
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("node: {e}"))?;
    let name = script.display();
    ensure!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("{name} printed no JSON: {e}"))
}

/// Runs a browser script from `tests/browser/` with `args` and parses the JSON it prints; fails
/// if the page reported errors (`pageErrors`).
pub async fn run_browser_script(script: &str, args: &[&str]) -> TestResult<serde_json::Value> {
    let report = run_node(&repo().join("tests/browser").join(script), args).await?;
    let errors = &report["pageErrors"];
    ensure!(
        errors.as_array().is_none_or(|e| e.is_empty()),
        "{script}: page errors: {errors}"
    );
    Ok(report)
}

/// The sample app, built from the packed player package and served on 127.0.0.1 by its own
/// server (which mints tickets as an app backend would); stopped on drop.
pub struct SampleApp {
    /// Its base URL; the page talks to the relay it was started with.
    pub url: String,
    /// What the build produced: the tarball's name and the bundle's files with their sizes.
    pub build: serde_json::Value,
    server: tokio::process::Child,
}

impl SampleApp {
    /// Packs the player (already built into `player/pkg`), installs the tarball into a fresh
    /// app under `work`, bundles it with esbuild, and serves it for the relay at `relay_ws`
    /// (`ws://IP:PORT`) with the relay's `secret`.
    pub async fn start(work: &Path, relay_ws: &str, secret: &str) -> TestResult<Self> {
        let app = repo().join("tests/sample-app");
        let work = work.to_string_lossy();
        let build = run_node(&app.join("build.mjs"), &[&work]).await?;
        let dist = build["dist"].as_str().ok_or("no dist")?.to_owned();
        let mut server = tokio::process::Command::new("node")
            .arg(app.join("server.mjs"))
            .args([&dist, relay_ws])
            .env("SESSION_SECRET", secret)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("node: {e}"))?;
        let stdout = server.stdout.take().ok_or("no stdout")?;
        let url = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the sample app's server printed nothing")?;
        Ok(Self { url, build, server })
    }
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
    }
}
