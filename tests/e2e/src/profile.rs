//! A CPU profile of the Worker, recorded through `wrangler dev`'s inspector with the Chrome
//! DevTools Protocol's `Profiler`, and summed up by function: where workerd spends its time
//! (docs/scaling.md). wasm-bindgen's JavaScript glue functions are anonymous in the profile;
//! they are named after the import each one implements (`send`, `read`, `queueMicrotask`),
//! read from the script's source.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::TestResult;

/// How often the profiler samples, in microseconds.
const SAMPLING_US: u64 = 200;

/// A recorded profile, summed up by function.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Samples taken.
    pub samples: u64,
    /// Samples in each function itself, most first.
    pub own: Vec<(String, u64)>,
    /// Samples in each function and what it called, most first.
    pub total: Vec<(String, u64)>,
}

impl Profile {
    /// The shares of all samples in `function` itself and in it with what it calls, in percent.
    pub fn shares(&self, function: &str) -> (f64, f64) {
        let count = |counts: &[(String, u64)]| {
            counts
                .iter()
                .find(|(name, _)| name == function)
                .map_or(0, |&(_, count)| count)
        };
        let percent = |count: u64| 100.0 * count as f64 / self.samples.max(1) as f64;
        (percent(count(&self.own)), percent(count(&self.total)))
    }
}

/// Profiles the Worker behind `wrangler dev`'s inspector at `port` for `duration`.
pub async fn record(port: u16, duration: Duration) -> TestResult<Profile> {
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("the inspector at {url}: {e}"))?;
    let mut cdp = Cdp { socket, next_id: 0 };
    cdp.call("Profiler.enable", json!({})).await?;
    cdp.call(
        "Profiler.setSamplingInterval",
        json!({ "interval": SAMPLING_US }),
    )
    .await?;
    cdp.call("Profiler.start", json!({})).await?;
    tokio::time::sleep(duration).await;
    let stopped = cdp.call("Profiler.stop", json!({})).await?;
    let profile = &stopped["profile"];
    // The glue's names are in its source.
    cdp.call("Debugger.enable", json!({})).await?;
    let mut sources = HashMap::new();
    for id in anonymous_scripts(profile) {
        let source = cdp
            .call("Debugger.getScriptSource", json!({ "scriptId": id }))
            .await?;
        let text = source["scriptSource"].as_str().unwrap_or_default();
        sources.insert(id, text.lines().map(str::to_owned).collect::<Vec<_>>());
    }
    cdp.call("Debugger.disable", json!({})).await?;
    summarise(profile, &sources)
}

/// A Chrome DevTools Protocol connection: one call at a time.
struct Cdp {
    socket: crate::Socket,
    next_id: u64,
}

impl Cdp {
    /// Calls `method` and returns its result; events that come meanwhile are passed over.
    async fn call(&mut self, method: &str, params: Value) -> TestResult<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::text(request))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(message) = self.socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // (Events carry no id; workerd's answers also repeat the method.)
                if value["id"].as_u64() == Some(id) {
                    return Some(value);
                }
            }
            None
        })
        .await
        .map_err(|_| format!("{method}: no answer within a minute"))?
        .ok_or_else(|| format!("{method}: the inspector closed"))?;
        match answer.get("error") {
            Some(error) => Err(format!("{method}: {error}")),
            None => Ok(answer["result"].clone()),
        }
    }
}

/// The scripts of the profile's anonymous JavaScript functions.
fn anonymous_scripts(profile: &Value) -> HashSet<String> {
    nodes(profile)
        .filter(|node| {
            let frame = &node["callFrame"];
            frame["functionName"].as_str() == Some("")
                && frame["url"]
                    .as_str()
                    .is_some_and(|url| url.ends_with(".js"))
        })
        .filter_map(|node| node["callFrame"]["scriptId"].as_str().map(str::to_owned))
        .collect()
}

fn nodes(profile: &Value) -> impl Iterator<Item = &Value> {
    profile["nodes"].as_array().into_iter().flatten()
}

/// Sums `profile`'s samples by function name, naming anonymous functions from `sources`
/// (script id to its lines).
fn summarise(profile: &Value, sources: &HashMap<String, Vec<String>>) -> TestResult<Profile> {
    let mut names = HashMap::new();
    let mut parents = HashMap::new();
    for node in nodes(profile) {
        let id = node["id"].as_u64().ok_or("a profile node without an id")?;
        names.insert(id, name(&node["callFrame"], sources));
        for child in node["children"].as_array().into_iter().flatten() {
            parents.insert(child.as_u64().unwrap_or_default(), id);
        }
    }
    let mut per_node: HashMap<u64, u64> = HashMap::new();
    for sample in profile["samples"].as_array().into_iter().flatten() {
        *per_node
            .entry(sample.as_u64().unwrap_or_default())
            .or_default() += 1;
    }
    let (mut own, mut total) = (BTreeMap::new(), BTreeMap::new());
    for (&leaf, &count) in &per_node {
        let leaf_name = names.get(&leaf).ok_or("a sample of no node")?;
        *own.entry(leaf_name.clone()).or_default() += count;
        // A function counts once per sample, however often it recurs in the stack.
        let mut seen = HashSet::new();
        let mut at = Some(leaf);
        while let Some(id) = at {
            if let Some(name) = names.get(&id).filter(|name| seen.insert(*name)) {
                *total.entry(name.clone()).or_default() += count;
            }
            at = parents.get(&id).copied();
        }
    }
    Ok(Profile {
        samples: per_node.values().sum(),
        own: most_first(own),
        total: most_first(total),
    })
}

fn most_first(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// A readable name for a call frame: a Rust function without its hash, a glue function as
/// `js: ` and the import it implements, the runtime's own code as `(native)`.
fn name(frame: &Value, sources: &HashMap<String, Vec<String>>) -> String {
    let function = frame["functionName"].as_str().unwrap_or_default();
    let url = frame["url"].as_str().unwrap_or_default();
    if !function.is_empty() {
        return without_hash(function);
    }
    if url.is_empty() {
        return "(native)".to_owned();
    }
    let line = frame["lineNumber"].as_u64().unwrap_or_default();
    let import = frame["scriptId"]
        .as_str()
        .and_then(|id| sources.get(id))
        .and_then(|lines| lines.get(line as usize))
        .and_then(|text| glue_import(text));
    match import {
        Some(import) => format!("js: {import}"),
        None => format!("{url}:{}", line + 1),
    }
}

/// A Rust function's name without its hash: `orpheus_worker::session::Session::relay` for
/// `orpheus_worker::session::Session::relay::h562a9f3c715d4dd6` (and for a shim of it, the
/// shim's words kept).
fn without_hash(function: &str) -> String {
    let mut name = function.to_owned();
    while let Some(at) = name
        .match_indices("::h")
        .map(|(at, _)| at)
        .find(|&at| is_hash(&name[at + 3..]))
    {
        name.replace_range(at..at + 3 + 16, "");
    }
    name
}

/// Whether `rest` starts with a Rust symbol hash: 16 hex digits, then the end or a space.
fn is_hash(rest: &str) -> bool {
    rest.len() >= 16
        && rest.as_bytes()[..16].iter().all(u8::is_ascii_hexdigit)
        && rest[16..].chars().next().is_none_or(|c| c == ' ')
}

/// The wasm-bindgen import a bundled glue function starts on `line`:
/// `…, __wbg_send_bb2492de0cbf1d99: /* @__PURE__ */ __name(function(e, t) {` is `send`.
fn glue_import(line: &str) -> Option<&str> {
    let start = line.rfind("__wbg_")? + "__wbg_".len();
    let key = &line[start..line[start..].find(':')? + start];
    let (import, hash) = key.rsplit_once('_')?;
    is_hash(hash).then_some(import)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glue_functions_are_named_after_their_import() {
        let line = r#"  }, "__wbg_random_df36b90cd78a7d54"), __wbg_read_47f6c9507b91493f: /* @__PURE__ */ __name(function(e, t) {"#;
        assert_eq!(glue_import(line), Some("read"));
        let line = r#"  }, "x"), __wbg_queueMicrotask_4a1a4d8dd332373b: /* @__PURE__ */ __name(function(e) {"#;
        assert_eq!(glue_import(line), Some("queueMicrotask"));
        assert_eq!(glue_import("function s() {"), None);
    }

    #[test]
    fn rust_names_lose_their_hash() {
        assert_eq!(
            without_hash("orpheus_worker::session::Session::relay::h562a9f3c715d4dd6"),
            "orpheus_worker::session::Session::relay"
        );
        assert_eq!(
            without_hash("invoke::hcba6fc1fbbd66846 externref shim"),
            "invoke externref shim"
        );
        assert_eq!(
            without_hash("session::Session::handle::ha6a447bb2fab37a0"),
            "session::Session::handle"
        );
        assert_eq!(without_hash("put"), "put");
        assert_eq!(without_hash("a::hello"), "a::hello");
    }

    #[test]
    fn samples_are_summed_by_function_own_and_total() {
        // root -> drive -> send (glue, line 1 of script 7) ; root -> drive -> drive (recursion)
        let profile = json!({
            "nodes": [
                { "id": 1, "callFrame": { "functionName": "(root)", "url": "", "lineNumber": -1 }, "children": [2] },
                { "id": 2, "callFrame": { "functionName": "drive::h0123456789abcdef", "url": "wasm://w", "lineNumber": 0 }, "children": [3, 4] },
                { "id": 3, "callFrame": { "functionName": "", "url": "index.js", "lineNumber": 1, "scriptId": "7" } },
                { "id": 4, "callFrame": { "functionName": "drive::h0123456789abcdef", "url": "wasm://w", "lineNumber": 0 } }
            ],
            "samples": [3, 3, 3, 4, 1]
        });
        let sources = HashMap::from([(
            "7".to_owned(),
            vec![
                "function s() {".to_owned(),
                r#"  }, "a"), __wbg_send_bb2492de0cbf1d99: /* @__PURE__ */ __name(function(e, t) {"#
                    .to_owned(),
            ],
        )]);
        assert_eq!(anonymous_scripts(&profile), HashSet::from(["7".to_owned()]));
        let summed = summarise(&profile, &sources).unwrap();
        assert_eq!(summed.samples, 5);
        assert_eq!(
            summed.own,
            vec![
                ("js: send".to_owned(), 3),
                ("(root)".to_owned(), 1),
                ("drive".to_owned(), 1)
            ]
        );
        assert_eq!(
            summed.total,
            vec![
                ("(root)".to_owned(), 5),
                ("drive".to_owned(), 4),
                ("js: send".to_owned(), 3)
            ]
        );
        assert_eq!(summed.shares("drive"), (20.0, 80.0));
        assert_eq!(summed.shares("nowhere"), (0.0, 0.0));
    }
}
