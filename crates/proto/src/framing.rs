//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.
//!
//! The length is checked against a hard maximum *before* any buffer is sized
//! from it, so a hostile 1 GiB prefix costs nothing. [`FrameDecoder`] is the
//! incremental form for byte streams; [`check_len`] serves readers that pull
//! the prefix and body separately (the async shells in `assent-net`).

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// Largest control-stream message. Control messages are small (names, keys,
/// signatures); anything bigger is an attack or a bug.
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;

/// Size of the length prefix.
pub const PREFIX_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Validates a length prefix against `max` before anything is allocated.
pub fn check_len(prefix: [u8; PREFIX_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Prefixes `body` with its length. Refuses bodies over `max` so a sender
/// cannot produce a frame its peer must reject.
pub fn encode_frame(body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    if body.len() > max {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Incremental decoder: feed bytes as they arrive, take whole frames out.
/// Its buffer never holds more than one maximal frame plus one push.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            max,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Appends received bytes. After an error the decoder stays failed: a
    /// stream that sent one bad prefix cannot be resynchronised safely.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.failed {
            return Err(FrameError::Decode("stream already failed".into()));
        }
        // Reject an oversize prefix as soon as it is visible, before buffering
        // the body it announces.
        if self.buf.len() < PREFIX_LEN && self.buf.len() + bytes.len() >= PREFIX_LEN {
            // What is buffered, then the first bytes of this push: together
            // at least PREFIX_LEN bytes, so every slot is filled.
            let mut prefix = [0u8; PREFIX_LEN];
            for (slot, byte) in prefix.iter_mut().zip(self.buf.iter().chain(bytes)) {
                *slot = *byte;
            }
            if let Err(e) = check_len(prefix, self.max) {
                self.failed = true;
                return Err(e);
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete frame body, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.failed {
            return Err(FrameError::Decode("stream already failed".into()));
        }
        let Some(prefix) = self.buf.first_chunk::<PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = match check_len(*prefix, self.max) {
            Ok(len) => len,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        // `None` until the whole body is buffered.
        let Some(body) = self.buf.get(PREFIX_LEN..PREFIX_LEN + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.buf.drain(..PREFIX_LEN + len);
        Ok(Some(body))
    }

    /// Call at end of stream: leftover bytes mean a truncated frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }

    /// Bytes currently buffered (for memory-bound tests).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_gib_prefix_is_rejected_before_allocating() {
        let mut d = FrameDecoder::new(MAX_CONTROL_FRAME);
        let err = d.push(&(1u32 << 30).to_be_bytes()).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                len: 1 << 30,
                max: MAX_CONTROL_FRAME
            }
        );
        assert!(d.buffered() < 64, "buffered {} bytes", d.buffered());
        assert!(d.push(b"more").is_err(), "a failed stream stays failed");
    }

    #[test]
    fn prefix_split_across_pushes_is_still_checked() {
        let mut d = FrameDecoder::new(16);
        d.push(&[0, 0]).unwrap();
        assert!(d.push(&[1, 0, 9, 9]).is_err());
    }

    #[test]
    fn frames_split_and_joined_arbitrarily() {
        let mut wire = encode_frame(b"hello", 16).unwrap();
        wire.extend(encode_frame(b"", 16).unwrap());
        wire.extend(encode_frame(b"world!", 16).unwrap());
        for chunk in 1..wire.len() {
            let mut d = FrameDecoder::new(16);
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece).unwrap();
                while let Some(f) = d.next_frame().unwrap() {
                    out.push(f);
                }
            }
            d.finish().unwrap();
            assert_eq!(out, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
        }
    }

    #[test]
    fn truncated_frame_is_reported_at_end() {
        let wire = encode_frame(b"hello", 16).unwrap();
        let mut d = FrameDecoder::new(16);
        d.push(&wire[..6]).unwrap();
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn encoder_refuses_oversize_body() {
        assert!(encode_frame(&[0; 17], 16).is_err());
        assert_eq!(check_len([0, 0, 0, 16], 16), Ok(16));
        assert!(check_len([0, 0, 0, 17], 16).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn random_bytes_never_panic_and_stay_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)
        ) {
            let max = 1024;
            let mut d = FrameDecoder::new(max);
            for c in &chunks {
                if d.push(c).is_err() { break; }
                while let Ok(Some(f)) = d.next_frame() {
                    prop_assert!(f.len() <= max);
                }
                prop_assert!(d.buf.len() <= PREFIX_LEN + max + 300);
            }
        }
    }
}
