//! Tickets as an app backend mints them, and the ledger of everything secret or private that
//! went through the relay during a run (the leak test searches logs and frames for it).

use orpheus_protocol::ticket::{mint, TicketClaims, TICKET_PROTOCOL_PREFIX};
use orpheus_protocol::SUBPROTOCOL;

/// Everything secret or private that went through the relay during a run, and every frame that
/// came back: the leak test checks none of the former appears in the latter or in any log.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Texts the clients asked to speak.
    pub texts: Vec<String>,
    /// Tickets minted or fetched.
    pub tickets: Vec<String>,
    /// Every JSON frame the relay sent.
    pub frames: Vec<String>,
}

/// The run's ledger.
pub static LEDGER: std::sync::Mutex<Ledger> = std::sync::Mutex::new(Ledger {
    texts: Vec::new(),
    tickets: Vec::new(),
    frames: Vec::new(),
});

/// Records a ticket obtained outside [`ticket`] (for instance from `/_dev/ticket`).
pub fn record_ticket(ticket: &str) {
    LEDGER
        .lock()
        .expect("ledger")
        .tickets
        .push(ticket.to_owned());
}

/// Mints a ticket as an app backend would, valid for `ttl_s` (negative: already expired).
pub fn ticket(secret: &str, sid: &str, origin: &str, ttl_s: i64) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = TicketClaims {
        v: 1,
        sid: sid.to_owned(),
        origin: origin.to_owned(),
        exp: now.saturating_add_signed(ttl_s),
        jti: format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    let ticket = mint(secret.as_bytes(), &claims);
    record_ticket(&ticket);
    ticket
}

/// The subprotocols a browser offers with a ticket.
pub fn protocols_with(ticket: &str) -> String {
    format!("{SUBPROTOCOL}, {TICKET_PROTOCOL_PREFIX}{ticket}")
}
