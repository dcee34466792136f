//! `chaos-proxy`: the chaos proxy on its own, to put in front of `scripts/run` or any server.
//!
//! ```text
//! chaos-proxy --listen 127.0.0.1:8788 --target 127.0.0.1:8787 [--seed N] [--hostile]
//!             [--latency MIN-MAX] [--reset SHARE] [--half-open SHARE] [--slice SHARE]
//!             [--throttle SHARE] [--bandwidth MIN-MAX] [--slow-close SHARE]
//! ```

use orpheus_chaos::{clock_seed, parse_seed, seed_from_env, Faults, Proxy};

fn range(text: &str) -> Result<(u64, u64), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or(format!("{text}: want MIN-MAX"))?;
    let parse = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    Ok((parse(low)?, parse(high)?))
}

fn share(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=1.0).contains(s))
        .ok_or(format!("{text}: want a share from 0 to 1"))
}

fn parse_args() -> Result<(String, String, u64, Faults), String> {
    let (mut listen, mut target, mut seed, mut faults) = (None, None, None, Faults::none());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--hostile" {
            faults = Faults::hostile();
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--target" => target = Some(value),
            "--seed" => seed = Some(parse_seed(&value).ok_or(format!("bad seed {value}"))?),
            "--latency" => faults.latency_ms = Some(range(&value)?),
            "--bandwidth" => faults.bandwidth_bps = range(&value)?,
            "--throttle" => faults.throttle = share(&value)?,
            "--reset" => faults.reset = share(&value)?,
            "--slice" => faults.slice = share(&value)?,
            "--half-open" => faults.half_open = share(&value)?,
            "--slow-close" => faults.slow_close = share(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((
        listen.ok_or("--listen is required")?,
        target.ok_or("--target is required")?,
        seed.or_else(seed_from_env).unwrap_or_else(clock_seed),
        faults,
    ))
}

#[tokio::main]
async fn main() {
    let (listen, target, seed, faults) = parse_args().unwrap_or_else(|e| {
        eprintln!("chaos-proxy: {e}");
        std::process::exit(2);
    });
    let resolve = |a: &str| {
        a.parse().unwrap_or_else(|e| {
            eprintln!("chaos-proxy: {a}: {e}");
            std::process::exit(2);
        })
    };
    let proxy = Proxy::listen(resolve(&listen), resolve(&target), seed, faults.clone())
        .await
        .unwrap_or_else(|e| {
            eprintln!("chaos-proxy: {listen}: {e}");
            std::process::exit(1);
        });
    println!(
        "chaos-proxy {} -> {target}, seed={seed:#x}, {faults:?}",
        proxy.addr()
    );
    let _ = tokio::signal::ctrl_c().await;
    println!("{:?}", proxy.stats());
}
