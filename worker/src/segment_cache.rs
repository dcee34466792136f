//! The segment cache: the audio the upstream produced for one segment, kept in Workers KV and
//! served again for a request with the same body (the same model, voice and exact text), with
//! no upstream request and no characters spent.
//!
//! KV, not the Cache API or R2: a segment's audio is tens to hundreds of kilobytes (well under
//! KV's 25 MiB), a repeated phrase ("One moment please") should hit in every location, which
//! KV replicates to and the per-location Cache API does not, and a read costs about a
//! thousandth of what Groq charges for the characters it replaces (a write, one per new
//! segment, about a hundredth). R2 would add a bucket to provision for objects this small.
//! KV's eventual consistency only means that a segment written moments ago elsewhere may miss
//! once. Entries expire after `SEGMENT_CACHE_TTL_S`, checked on read against the time stored
//! with them (KV's own expiry, at least 60 s, only cleans up).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::kv::KvStore;
use worker::Env;

use crate::time::Millis;

/// The KV namespace binding (wrangler.toml).
pub const BINDING: &str = "SEGMENT_CACHE";

/// The largest answer kept: about three minutes of 24 kHz audio, far more than 200 characters
/// of speech.
const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

/// KV's shortest expiry.
const MIN_KV_TTL_S: u64 = 60;

/// The key of a segment's entry: a digest of the upstream request body.
pub fn key(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("segment:v1:{hex}")
}

/// What is stored beside the audio.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// When it stops being served.
    pub expires_at: Millis,
}

impl Entry {
    /// Whether it may still be served at `now`.
    pub fn fresh(&self, now: Millis) -> bool {
        now < self.expires_at
    }
}

/// Whether an answer of `len` bytes is kept.
pub fn keeps(len: usize) -> bool {
    len > 0 && len <= MAX_ENTRY_BYTES
}

/// A handle on the cache; cloned per request.
#[derive(Clone)]
pub struct SegmentCache {
    kv: KvStore,
    ttl_s: u64,
}

impl SegmentCache {
    /// The cache, unless it is off (`ttl_s` 0) or the relay has no KV namespace bound.
    pub fn from_env(env: &Env, ttl_s: u64) -> Option<Self> {
        let kv = env.kv(BINDING).ok()?;
        (ttl_s > 0).then_some(Self { kv, ttl_s })
    }

    /// The upstream's answer (a WAV body) for `key`, if a fresh one is kept. A failed read is a
    /// miss.
    pub async fn get(&self, key: &str, now: Millis) -> Option<Vec<u8>> {
        let (bytes, entry) = self.kv.get(key).bytes_with_metadata::<Entry>().await.ok()?;
        entry.filter(|e| e.fresh(now))?;
        bytes
    }

    /// Keeps the upstream's answer for `key`. A failed write only costs a later miss.
    pub async fn put(&self, key: &str, wav: &[u8], now: Millis) {
        if !keeps(wav.len()) {
            return;
        }
        let entry = Entry {
            expires_at: now + self.ttl_s * 1000,
        };
        let Ok(put) = self.kv.put_bytes(key, wav) else {
            return;
        };
        let Ok(put) = put
            .expiration_ttl(self.ttl_s.max(MIN_KV_TTL_S))
            .metadata(entry)
        else {
            return;
        };
        let _ = put.execute().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_whole_request() {
        let a = crate::upstream::request_body(orpheus_protocol::Model::English, "troy", "Hi.");
        let b = crate::upstream::request_body(orpheus_protocol::Model::English, "diana", "Hi.");
        let c = crate::upstream::request_body(orpheus_protocol::Model::English, "troy", "Hi!");
        assert_eq!(key(&a), key(&a.clone()));
        assert_ne!(key(&a), key(&b), "another voice");
        assert_ne!(key(&a), key(&c), "another text");
        assert!(key(&a).starts_with("segment:v1:") && !key(&a).contains("Hi"));
    }

    #[test]
    fn entries_expire_and_size_is_bounded() {
        let entry = Entry { expires_at: 10_000 };
        assert!(entry.fresh(9_999) && !entry.fresh(10_000));
        assert!(keeps(1) && keeps(MAX_ENTRY_BYTES));
        assert!(!keeps(0) && !keeps(MAX_ENTRY_BYTES + 1));
    }
}
