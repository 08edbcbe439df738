//! The record layer: one logical message becomes one or more Noise transport
//! messages, each `u16` big-endian length + ciphertext, whose plaintext is a
//! flag byte and a chunk of the message.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;
use std::sync::Arc;

use snow::StatelessTransportState;

use crate::{
    ChannelError, Result, FLAG_LAST, FLAG_MORE, LEN_PREFIX, MAX_CHUNK, MAX_NOISE_MSG,
    MAX_SESSION_MSG, TAG_LEN,
};

/// Both directions share one snow transport; each half keeps its own nonce
/// counter, so the halves can live in different tasks.
type Transport = Arc<StatelessTransportState>;

/// Noise reserves nonce 2^64-1; a channel never gets near it, but wrapping
/// would reuse a nonce, so it is refused rather than assumed away.
fn next_nonce(nonce: &mut u64) -> Result<u64> {
    let n = *nonce;
    if n == u64::MAX {
        return Err(ChannelError::Malformed("record counter exhausted".into()));
    }
    *nonce += 1;
    Ok(n)
}

/// The sending half: turns messages into wire bytes.
pub struct Sealer {
    transport: Transport,
    nonce: u64,
    failed: bool,
    plain: Vec<u8>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("records_sent", &self.nonce)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(transport: Transport) -> Sealer {
        Sealer {
            transport,
            nonce: 0,
            failed: false,
            plain: Vec::with_capacity(1 + MAX_CHUNK),
        }
    }

    /// Wire bytes for one logical message (an empty message is one record).
    ///
    /// A message over [`MAX_SESSION_MSG`] is refused with `TooLarge` before
    /// anything is sealed, so that refusal leaves the sealer usable; any
    /// other error ends it.
    pub fn seal(&mut self, message: &[u8]) -> Result<Vec<u8>> {
        if self.failed {
            return Err(ChannelError::Failed);
        }
        if message.len() > MAX_SESSION_MSG {
            return Err(ChannelError::TooLarge {
                len: message.len(),
                max: MAX_SESSION_MSG,
            });
        }
        let records = message.len().div_ceil(MAX_CHUNK).max(1);
        let mut out = Vec::with_capacity(message.len() + records * (LEN_PREFIX + 1 + TAG_LEN));
        if message.is_empty() {
            self.seal_record(FLAG_LAST, &[], &mut out)?;
        } else {
            for (i, chunk) in message.chunks(MAX_CHUNK).enumerate() {
                let flag = if i + 1 == records {
                    FLAG_LAST
                } else {
                    FLAG_MORE
                };
                self.seal_record(flag, chunk, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Appends one record to `out`.
    pub(crate) fn seal_record(&mut self, flag: u8, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        debug_assert!(chunk.len() <= MAX_CHUNK);
        let result = self.seal_record_inner(flag, chunk, out);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn seal_record_inner(&mut self, flag: u8, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.plain.clear();
        self.plain.push(flag);
        self.plain.extend_from_slice(chunk);
        let nonce = next_nonce(&mut self.nonce)?;
        let start = out.len();
        // Room for the length prefix (filled in once the size is known) and
        // the ciphertext, sealed in place.
        out.resize(start + LEN_PREFIX + self.plain.len() + TAG_LEN, 0);
        let (prefix, body) = out
            .get_mut(start..)
            .and_then(|record| record.split_first_chunk_mut::<LEN_PREFIX>())
            .ok_or_else(|| ChannelError::Malformed("no room for the record".into()))?;
        let written = self
            .transport
            .write_message(nonce, &self.plain, body)
            .map_err(crate::noise_error)?;
        let len = u16::try_from(written)
            .map_err(|_| ChannelError::Malformed("record over the Noise limit".into()))?;
        *prefix = len.to_be_bytes();
        out.truncate(start + LEN_PREFIX + written);
        Ok(())
    }
}

/// The receiving half: takes wire bytes in any chunking and hands back whole
/// messages.
///
/// Memory is bounded by what the caller pushes between calls to
/// [`Opener::next_message`] plus the message being assembled, which never
/// exceeds the limit: a message that would is refused first.
pub struct Opener {
    transport: Transport,
    nonce: u64,
    failed: bool,
    /// Received wire bytes; `inbox[consumed..]` is not yet processed.
    inbox: Vec<u8>,
    consumed: usize,
    /// The message being assembled from `FLAG_MORE` records.
    assembled: Vec<u8>,
    max_message: usize,
    scratch: Vec<u8>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("records_received", &self.nonce)
            .field("buffered", &self.buffered_len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Opener {
    pub(crate) fn new(transport: Transport, max_message: usize) -> Opener {
        Opener {
            transport,
            nonce: 0,
            failed: false,
            inbox: Vec::new(),
            consumed: 0,
            assembled: Vec::new(),
            max_message,
            scratch: vec![0; MAX_NOISE_MSG],
        }
    }

    /// Raises the limit once the identity step (whose one message is a
    /// signature) is over.
    pub(crate) fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
    }

    /// Adds received wire bytes. Nothing is decrypted until
    /// [`Opener::next_message`].
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.consumed > 0 {
            self.inbox.drain(..self.consumed);
            self.consumed = 0;
        }
        self.inbox.extend_from_slice(bytes);
    }

    /// The next complete message, or `None` until more bytes are pushed.
    /// After an error every later call fails too.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>> {
        if self.failed {
            return Err(ChannelError::Failed);
        }
        let result = self.next_message_inner();
        if result.is_err() {
            self.failed = true;
            self.inbox = Vec::new();
            self.assembled = Vec::new();
        }
        result
    }

    fn next_message_inner(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            // `consumed` never passes the end of `inbox`.
            let avail = self.inbox.get(self.consumed..).unwrap_or(&[]);
            let Some((prefix, rest)) = avail.split_first_chunk::<LEN_PREFIX>() else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes(*prefix));
            if len < 1 + TAG_LEN {
                return Err(ChannelError::Malformed(format!(
                    "record of {len} bytes is shorter than a flag and a tag"
                )));
            }
            let Some(ciphertext) = rest.get(..len) else {
                return Ok(None);
            };
            let nonce = next_nonce(&mut self.nonce)?;
            let n = self
                .transport
                .read_message(nonce, ciphertext, &mut self.scratch)
                .map_err(|_| ChannelError::Decrypt)?;
            self.consumed += LEN_PREFIX + len;
            if self.consumed == self.inbox.len() {
                self.inbox.clear();
                self.consumed = 0;
            }
            let (flag, chunk) = match self.scratch.get(..n).and_then(<[u8]>::split_first) {
                Some((&flag, chunk)) => (flag, chunk),
                None => return Err(ChannelError::Malformed("record without a flag".into())),
            };
            match flag {
                FLAG_LAST => {}
                // An empty non-final record makes no progress; only a broken
                // or hostile peer sends one.
                FLAG_MORE if chunk.is_empty() => {
                    return Err(ChannelError::Malformed("empty continuation record".into()))
                }
                FLAG_MORE => {}
                other => return Err(ChannelError::Malformed(format!("bad record flag {other}"))),
            }
            let total = self.assembled.len() + chunk.len();
            if total > self.max_message {
                return Err(ChannelError::TooLarge {
                    len: total,
                    max: self.max_message,
                });
            }
            if self.assembled.capacity() < total {
                // Grow geometrically but never past the limit, so a message
                // at the limit does not cost twice its size.
                let target = total
                    .max(self.assembled.capacity() * 2)
                    .min(self.max_message);
                self.assembled.reserve_exact(target - self.assembled.len());
            }
            self.assembled.extend_from_slice(chunk);
            if flag == FLAG_LAST {
                return Ok(Some(std::mem::take(&mut self.assembled)));
            }
        }
    }

    /// True when bytes of an unfinished record or message are held, so the
    /// stream ending now would cut a message short.
    pub fn has_partial(&self) -> bool {
        self.consumed < self.inbox.len() || !self.assembled.is_empty()
    }

    /// Bytes held: unprocessed wire bytes plus the message being assembled.
    pub fn buffered_len(&self) -> usize {
        self.inbox.len() - self.consumed + self.assembled.len()
    }

    #[cfg(test)]
    pub(crate) fn assembled_capacity(&self) -> usize {
        self.assembled.capacity()
    }
}
