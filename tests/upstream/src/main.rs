//! `groq-local`: runs the local Groq-compatible upstream on 127.0.0.1.

use std::sync::Arc;

use groq_local::{serve, Config, Engine, Fault, Stats};

const USAGE: &str = "usage: groq-local [--port N] [--key KEY] [--engine signal|espeak]
                  [--samples-per-char N] [--ms-per-char N] [--fault SPEC]

Serves POST /openai/v1/audio/speech like Groq, on 127.0.0.1. GET /_stats shows counters.
The key defaults to $GROQ_LOCAL_KEY, else groq-local-key. SPEC is e.g. 'status=429;retry_after=3'
(see tests/upstream/src/fault.rs); a request can carry its own as [[fault:SPEC]] in its input.";

fn parse_args() -> Result<(u16, Config), String> {
    let mut port = 0;
    let mut config = Config {
        api_key: std::env::var("GROQ_LOCAL_KEY").unwrap_or_else(|_| Config::default().api_key),
        ..Config::default()
    };
    let mut samples_per_char = 1600;
    let mut espeak = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--port" => port = number(value()?)? as u16,
            "--key" => config.api_key = value()?,
            "--engine" => espeak = value()? == "espeak",
            "--samples-per-char" => samples_per_char = number(value()?)? as usize,
            "--ms-per-char" => config.ms_per_char = number(value()?)?,
            "--fault" => config.fault = Fault::parse(&value()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    config.engine = if espeak {
        Engine::Espeak
    } else {
        Engine::Signal { samples_per_char }
    };
    Ok((port, config))
}

#[tokio::main]
async fn main() {
    let (port, config) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("groq-local: {message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("groq-local: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound address");
    println!(
        "groq-local listening on http://{addr} (engine: {:?})",
        config.engine
    );
    serve(listener, Arc::new(config), Arc::new(Stats::default())).await;
}
