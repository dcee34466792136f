//! Configuration read from the Worker's environment (wrangler.toml `[vars]` and secrets).

use worker::Env;

use crate::admission::Policy;
use crate::budget::BudgetLimits;
use crate::openai::names::Names;
use crate::session::Config;
use orpheus_protocol::Limits;

/// Production upstream.
const DEFAULT_BASE_URL: &str = "https://api.groq.com";

/// The Durable Object namespace binding (wrangler.toml): sessions, and API keys' limits.
pub const SESSIONS_BINDING: &str = "SESSIONS";

/// The service binding of the encoder Worker (encoder/, wrangler.toml): every HTTP format and
/// rate but PCM and WAV at Orpheus' own, and Opus for WebSocket listeners.
pub const ENCODER_BINDING: &str = "ENCODER";

/// Everything the relay reads from its environment, read once per object.
#[derive(Clone)]
pub struct Settings {
    /// Base URL of the Groq-compatible upstream (`GROQ_BASE_URL`).
    pub base_url: String,
    /// `GROQ_API_KEY`; never logged, never sent anywhere but the upstream.
    pub api_key: Option<String>,
    /// `RELAY_API_KEYS`, as digests: the keys of the OpenAI-compatible endpoint (none: it is
    /// off). Never logged.
    pub relay_api_keys: Vec<[u8; 32]>,
    /// Session tunables.
    pub session: Config,
    /// How long a segment's audio is served from the segment cache (`SEGMENT_CACHE_TTL_S`;
    /// 0 turns the cache off).
    pub segment_cache_ttl_s: u64,
    /// Who may connect.
    pub policy: Policy,
    /// OpenAI's names for models and voices, with the operator's (`OPENAI_MODELS`,
    /// `OPENAI_VOICES`).
    pub names: Names,
}

/// A `[vars]` value as text, empty when absent.
fn text_var(env: &Env, name: &str) -> String {
    env.var(name).map(|v| v.to_string()).unwrap_or_default()
}

/// A `[vars]` value parsed as `T`, or `default` when it is absent or malformed.
fn var_or<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    env.var(name)
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    /// Reads the settings; missing optional values take their defaults.
    pub fn from_env(env: &Env) -> Self {
        let base_url = env
            .var("GROQ_BASE_URL")
            .map(|v| v.to_string())
            .unwrap_or_else(|_| DEFAULT_BASE_URL.to_owned());
        let api_key = env
            .secret("GROQ_API_KEY")
            .map(|v| v.to_string())
            .ok()
            .filter(|k| !k.trim().is_empty());
        let defaults = Config::default();
        let limits = Limits {
            max_text_chars: var_or(env, "LIMIT_TEXT_CHARS", defaults.limits.max_text_chars),
            max_frame_bytes: var_or(env, "LIMIT_FRAME_BYTES", defaults.limits.max_frame_bytes),
            ..defaults.limits
        };
        let budget = BudgetLimits {
            messages_per_minute: var_or(
                env,
                "LIMIT_MESSAGES_PER_MINUTE",
                defaults.budget.messages_per_minute,
            ),
            chars_per_minute: var_or(
                env,
                "LIMIT_CHARS_PER_MINUTE",
                defaults.budget.chars_per_minute,
            ),
            chars_per_day: var_or(env, "LIMIT_CHARS_PER_DAY", defaults.budget.chars_per_day),
        };
        let session = Config {
            limits,
            budget,
            frames_per_second: var_or(env, "LIMIT_FRAMES_PER_SECOND", defaults.frames_per_second),
            upstream_configured: api_key.is_some(),
            opus: env.service(ENCODER_BINDING).is_ok(),
            first_byte_timeout_ms: var_or(
                env,
                "UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
                defaults.first_byte_timeout_ms,
            ),
            stall_timeout_ms: var_or(env, "UPSTREAM_STALL_TIMEOUT_MS", defaults.stall_timeout_ms),
            max_retry_wait_s: var_or(env, "UPSTREAM_MAX_RETRY_WAIT_S", defaults.max_retry_wait_s),
            flow_window_ms: var_or(env, "FLOW_WINDOW_MS", defaults.flow_window_ms),
            resume_grace_ms: var_or(env, "RESUME_GRACE_MS", defaults.resume_grace_ms),
            text_idle_ms: var_or(env, "TEXT_IDLE_MS", defaults.text_idle_ms),
            text_flush_ms: var_or(env, "TEXT_FLUSH_MS", defaults.text_flush_ms),
            first_segment_chars: var_or(env, "FIRST_SEGMENT_CHARS", defaults.first_segment_chars),
            ..defaults
        };
        let policy = Policy {
            secret: env
                .secret("SESSION_SECRET")
                .map(|v| v.to_string().into_bytes())
                .ok()
                .filter(|s| !s.is_empty()),
            dev_mode: env
                .var("ORPHEUS_DEV_MODE")
                .is_ok_and(|v| v.to_string() == "1"),
            allowed_origins: env
                .var("ALLOWED_ORIGINS")
                .map(|v| Policy::parse_origins(&v.to_string()))
                .unwrap_or_default(),
        };
        let relay_api_keys = env
            .secret("RELAY_API_KEYS")
            .map(|v| crate::openai::key_digests(&v.to_string()))
            .unwrap_or_default();
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            relay_api_keys,
            segment_cache_ttl_s: var_or(env, "SEGMENT_CACHE_TTL_S", 7 * 24 * 3600),
            session,
            policy,
            names: Names::with(
                &text_var(env, "OPENAI_MODELS"),
                &text_var(env, "OPENAI_VOICES"),
            ),
        }
    }
}
