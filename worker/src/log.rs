//! The one logging choke point. Every log line of the relay is built here from typed fields:
//! numbers, fixed words, and client-chosen ids (sanitised). There is no field for free text, so
//! neither the user's text nor an upstream body can be logged; as a second line of defence the
//! formatted line is scrubbed of anything shaped like an API key or a ticket.

use std::fmt::Write;

/// One field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A count, length, code number or duration.
    Num(u64),
    /// A fixed word chosen by the relay (a reason, a code, a voice name).
    Word(&'static str),
    /// A client-chosen id (message id), sanitised when formatted.
    Id(String),
}

/// A structured log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// What happened, e.g. `speak`, `end`.
    pub event: &'static str,
    /// Its details.
    pub fields: Vec<(&'static str, Field)>,
}

impl LogLine {
    /// An event with no fields yet.
    pub fn new(event: &'static str) -> Self {
        Self {
            event,
            fields: Vec::new(),
        }
    }

    /// Adds a number.
    pub fn num(mut self, key: &'static str, value: impl Into<u64>) -> Self {
        self.fields.push((key, Field::Num(value.into())));
        self
    }

    /// Adds a fixed word.
    pub fn word(mut self, key: &'static str, value: &'static str) -> Self {
        self.fields.push((key, Field::Word(value)));
        self
    }

    /// Adds a client-chosen id.
    pub fn id(mut self, key: &'static str, value: &str) -> Self {
        self.fields.push((key, Field::Id(value.to_owned())));
        self
    }
}

/// A short, non-reversible tag for a session id.
pub fn session_tag(session: &str) -> String {
    let hash = session.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash >> 32)
}

/// Keeps an id readable and single-line: at most 64 of `[A-Za-z0-9_.:-]`, others become `_`.
fn sanitise(id: &str) -> String {
    id.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Replaces key- and ticket-shaped tokens: `gsk_…`, `orpheus.ticket.…`, and any run of 40 or
/// more base64url characters.
pub fn scrub(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for (i, token) in line.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let longest_run = token
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(str::len)
            .max()
            .unwrap_or(0);
        if token.contains("gsk_") || token.contains("orpheus.ticket.") || longest_run >= 40 {
            out.push_str("[redacted]");
        } else {
            out.push_str(token);
        }
    }
    out
}

/// Formats a line: `event session=TAG key=value …`, scrubbed.
pub fn format(session: Option<&str>, line: &LogLine) -> String {
    let mut text = String::from(line.event);
    if let Some(session) = session {
        let _ = write!(text, " session={}", session_tag(session));
    }
    for (key, value) in &line.fields {
        let _ = match value {
            Field::Num(n) => write!(text, " {key}={n}"),
            Field::Word(w) => write!(text, " {key}={w}"),
            Field::Id(id) => write!(text, " {key}={}", sanitise(id)),
        };
    }
    scrub(&text)
}

/// Writes a line to the Worker's log.
pub fn emit(session: Option<&str>, line: &LogLine) {
    worker::console_log!("{}", format(session, line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_typed_fields() {
        let line = LogLine::new("end")
            .id("id", "m 1\nx")
            .word("reason", "done")
            .num("samples", 42u64);
        let text = format(Some("abc"), &line);
        assert_eq!(
            text,
            format!(
                "end session={} id=m_1_x reason=done samples=42",
                session_tag("abc")
            )
        );
        assert!(!text.contains("abc"), "the session id itself is not logged");
    }

    #[test]
    fn scrubs_keys_and_tickets() {
        let ticket = "eyJ2IjoxLCJzaWQiOiJzMSIsIm9yaWdpbiI6Imh0dHA6Ly94In0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let line = format!("x gsk_abc123 orpheus.ticket.{ticket} {ticket} ok=1");
        assert_eq!(scrub(&line), "x [redacted] [redacted] [redacted] ok=1");
        let id = LogLine::new("e").id("id", &"a".repeat(64));
        assert!(
            format(None, &id).contains("[redacted]"),
            "even a long id that looks like a token"
        );
    }
}
