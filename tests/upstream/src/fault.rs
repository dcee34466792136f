//! Faults the upstream can be told to inject, per run or per request.

/// What to do wrong (or slowly) when answering a request.
///
/// Written as `key=value` pairs separated by `;`, e.g. `status=429;retry_after=3` or
/// `chunk=7;gap_ms=2;extra_chunks`, either on the command line (`--fault`) for every request or
/// inside the input text as `[[fault:...]]` for the requests whose segment carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// Answer with this error status and a Groq error body instead of audio.
    pub status: Option<u16>,
    /// `error.code` of that body (e.g. `model_terms_required`).
    pub code: Option<String>,
    /// `retry-after` header, in seconds.
    pub retry_after: Option<u32>,
    /// Apply `status` only to the first request with this input; later ones succeed.
    pub once: bool,
    /// Wait this long before the response head.
    pub delay_ms: u64,
    /// Write the body in pieces of this many bytes (odd sizes split samples).
    pub chunk: Option<usize>,
    /// Pause between body pieces.
    pub gap_ms: u64,
    /// A further random pause of 0 to this many ms between pieces (seeded by the input).
    pub jitter_ms: u64,
    /// Write the WAV header in several small pieces with pauses, so it arrives split.
    pub split_header: bool,
    /// Put LIST and junk chunks before `data`, with stale RIFF and data sizes.
    pub extra_chunks: bool,
    /// Reset the connection (TCP RST) after this many body bytes.
    pub reset_after: Option<usize>,
    /// Stop writing after this many body bytes, keeping the connection open.
    pub stall_after: Option<usize>,
    /// Never send the response head.
    pub stall_head: bool,
    /// Answer success with this 2xx status instead of 200; 204 carries no body.
    pub ok_status: Option<u16>,
    /// Pad an error body with this many KiB of trailing white space (a huge error page).
    pub pad_error_kb: usize,
}

/// The marker that starts a per-request directive inside the input text.
const DIRECTIVE: &str = "[[fault:";

impl Fault {
    /// Parses `key=value;flag;...`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut f = Fault::default();
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad number in {item:?}"))
            };
            match key {
                "status" => f.status = Some(num(value)? as u16),
                "code" => f.code = Some(value.to_owned()),
                "retry_after" => f.retry_after = Some(num(value)? as u32),
                "once" => f.once = true,
                "delay_ms" => f.delay_ms = num(value)?,
                "chunk" => f.chunk = Some(num(value)?.max(1) as usize),
                "gap_ms" => f.gap_ms = num(value)?,
                "jitter_ms" => f.jitter_ms = num(value)?,
                "split_header" => f.split_header = true,
                "extra_chunks" => f.extra_chunks = true,
                "reset_after" => f.reset_after = Some(num(value)? as usize),
                "stall_after" => f.stall_after = Some(num(value)? as usize),
                "stall_head" => f.stall_head = true,
                "ok_status" => f.ok_status = Some(num(value)? as u16),
                "pad_error_kb" => f.pad_error_kb = num(value)? as usize,
                _ => return Err(format!("unknown fault {key:?}")),
            }
        }
        Ok(f)
    }

    /// The directive inside `input`, if any.
    pub fn from_input(input: &str) -> Option<Result<Self, String>> {
        let start = input.find(DIRECTIVE)? + DIRECTIVE.len();
        let end = input[start..].find("]]")? + start;
        Some(Self::parse(&input[start..end]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_directives() {
        let f = Fault::parse("status=429;retry_after=3").unwrap();
        assert_eq!((f.status, f.retry_after), (Some(429), Some(3)));
        let f = Fault::from_input("Hello [[fault:chunk=7;extra_chunks]] there")
            .unwrap()
            .unwrap();
        assert_eq!(f.chunk, Some(7));
        assert!(f.extra_chunks);
        assert!(Fault::from_input("plain").is_none());
        assert!(Fault::parse("explode").is_err());
    }
}
