//! `orpheus-ticket`: mints a connection ticket for local testing.
//!
//! The secret comes from the SESSION_SECRET environment variable (never an argument, which other
//! users could read in the process list). Prints the ticket on stdout.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use orpheus_protocol::ticket::{mint, TicketClaims, MAX_TICKET_TTL_S};

const USAGE: &str =
    "usage: SESSION_SECRET=... orpheus-ticket --session SID --origin ORIGIN [--ttl SECONDS]
Prints a ticket; offer it as the WebSocket subprotocol orpheus.ticket.<ticket> beside orpheus.v1.";

fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn run() -> Result<String, String> {
    let secret =
        std::env::var("SESSION_SECRET").map_err(|_| "SESSION_SECRET is not set".to_owned())?;
    let (mut session, mut origin, mut ttl) = (None, None, 60u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--session" => session = Some(value),
            "--origin" => origin = Some(value),
            "--ttl" => {
                ttl = value
                    .parse()
                    .map_err(|_| "--ttl: not a number".to_owned())?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if ttl > MAX_TICKET_TTL_S {
        return Err(format!("--ttl: at most {MAX_TICKET_TTL_S} seconds"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = TicketClaims {
        v: 1,
        sid: session.ok_or("--session is required")?,
        origin: origin.ok_or("--origin is required")?,
        exp: now + ttl,
        jti: random_id().map_err(|e| e.to_string())?,
    };
    Ok(mint(secret.as_bytes(), &claims))
}

fn main() {
    match run() {
        Ok(ticket) => println!("{ticket}"),
        Err(message) => {
            eprintln!("orpheus-ticket: {message}\n{USAGE}");
            std::process::exit(2);
        }
    }
}
