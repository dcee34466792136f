//! Between the relay and its encoder Worker (`encoder/`): a WebSocket listener's Opus.
//!
//! The relay posts one stream's audio frames (version 1, PCM, as they would go to the
//! listener) to [`PACKETS_PATH`] as it sends them, and the encoder answers with the stream's
//! Opus frames (version 2) as it makes them, each ready for the socket. Both ways a frame is
//! a record, `[u32 LE length][length bytes]`, so that the stream's pieces may be cut anywhere.

use crate::prelude::*;

/// Where the encoder takes a stream's PCM frames.
pub const PACKETS_PATH: &str = "/packets";

/// Length of a record's header.
pub const RECORD_HEADER_LEN: usize = 4;

/// Appends `bytes` as a record.
pub fn put_record(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Cuts a stream of bytes into records, wherever the stream's pieces were cut.
#[derive(Debug, Default)]
pub struct Records {
    /// Bytes of a record not yet whole.
    partial: Vec<u8>,
}

impl Records {
    /// The records `piece` completes, in order.
    pub fn push(&mut self, piece: &[u8]) -> Vec<Vec<u8>> {
        self.partial.extend_from_slice(piece);
        let mut records = Vec::new();
        let mut at = 0;
        while let Some(header) = self.partial.get(at..at + RECORD_HEADER_LEN) {
            let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
            let body = at + RECORD_HEADER_LEN;
            let Some(bytes) = self.partial.get(body..body + len) else {
                break;
            };
            records.push(bytes.to_vec());
            at = body + len;
        }
        self.partial.drain(..at);
        records
    }

    /// Whether no record was left half-read.
    pub fn is_clean(&self) -> bool {
        self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_whole_however_the_stream_is_cut() {
        let mut stream = Vec::new();
        put_record(&mut stream, &[1, 0, 2, 0]);
        put_record(&mut stream, &[]);
        put_record(&mut stream, &[7; 40]);
        for cut in 0..stream.len() {
            let mut records = Records::default();
            let mut got = records.push(&stream[..cut]);
            got.extend(records.push(&stream[cut..]));
            assert!(records.is_clean());
            assert_eq!(got, [vec![1, 0, 2, 0], vec![], vec![7; 40]], "cut at {cut}");
        }
        let mut records = Records::default();
        assert!(records.push(&stream[..5]).is_empty());
        assert!(!records.is_clean());
    }
}
