//! A session recording: the codec stream exactly as the viewer received
//! it, each update with the milliseconds since the recording started. It
//! replays through the same [`crate::Decoder`], so a replayed frame is
//! pixel for pixel the frame the viewer showed. The first update is a
//! keyframe (the viewer starts writing at one).
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | `ASNTREC1` |
//! | then per update: 8 | milliseconds since the start, little-endian |
//! | 4 | update length, little-endian, 1..=[`MAX_RECORDED_UPDATE`] |
//! | that many | the update (codec wire format) |
//!
//! The reader treats the file as hostile: a length is checked before
//! anything is allocated for it, and a file cut short is reported, not
//! guessed at.

use std::io::{Read, Write};

/// The first bytes of every recording.
pub const MAGIC: &[u8; 8] = b"ASNTREC1";
/// Largest update a recording may hold (the session channel's own limit).
pub const MAX_RECORDED_UPDATE: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("not an Assent recording (it does not start with ASNTREC1)")]
    NotARecording,
    #[error("an update of {0} bytes: the limit is {MAX_RECORDED_UPDATE}")]
    UpdateTooLarge(usize),
    #[error("the recording is cut short inside an update")]
    Truncated,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes a recording to `out`.
pub struct RecordingWriter<W: Write> {
    out: W,
}

impl<W: Write> RecordingWriter<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(RecordingWriter { out })
    }

    pub fn write_update(&mut self, millis: u64, update: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(update.len())
            .ok()
            .filter(|&l| l > 0 && l as usize <= MAX_RECORDED_UPDATE)
            .ok_or_else(|| std::io::Error::other("update size out of range for a recording"))?;
        self.out.write_all(&millis.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(update)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads a recording's updates in order.
pub struct RecordingReader<R: Read> {
    input: R,
}

impl<R: Read> RecordingReader<R> {
    pub fn new(mut input: R) -> Result<Self, RecordingError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| RecordingError::NotARecording)?;
        if &magic != MAGIC {
            return Err(RecordingError::NotARecording);
        }
        Ok(RecordingReader { input })
    }

    /// The next update and its time, or `None` at a clean end.
    pub fn next_update(&mut self) -> Result<Option<(u64, Vec<u8>)>, RecordingError> {
        let mut head = [0u8; 12];
        let mut got = 0;
        while got < head.len() {
            match self.input.read(&mut head[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(RecordingError::Truncated),
                n => got += n,
            }
        }
        let (millis, len) = head.split_at(8);
        let millis = u64::from_le_bytes(millis.try_into().unwrap_or_default());
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        if len == 0 || len > MAX_RECORDED_UPDATE {
            return Err(RecordingError::UpdateTooLarge(len));
        }
        // Read through `take` so a lying length costs only what is there.
        let mut update = Vec::with_capacity(len.min(16 * 1024));
        (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut update)?;
        if update.len() != len {
            return Err(RecordingError::Truncated);
        }
        Ok(Some((millis, update)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_come_back_in_order_and_damage_is_named() {
        let mut w = RecordingWriter::new(Vec::new()).unwrap();
        w.write_update(0, b"first").unwrap();
        w.write_update(40, b"second").unwrap();
        assert!(w.write_update(50, b"").is_err());
        let bytes = w.into_inner();
        let mut r = RecordingReader::new(&bytes[..]).unwrap();
        assert_eq!(r.next_update().unwrap(), Some((0, b"first".to_vec())));
        assert_eq!(r.next_update().unwrap(), Some((40, b"second".to_vec())));
        assert_eq!(r.next_update().unwrap(), None);

        let cut = &bytes[..bytes.len() - 2];
        let mut r = RecordingReader::new(cut).unwrap();
        r.next_update().unwrap();
        assert!(matches!(r.next_update(), Err(RecordingError::Truncated)));
        assert!(matches!(
            RecordingReader::new(&b"PNG....."[..]),
            Err(RecordingError::NotARecording)
        ));
        let mut huge = MAGIC.to_vec();
        huge.extend(0u64.to_le_bytes());
        huge.extend(u32::MAX.to_le_bytes());
        let mut r = RecordingReader::new(&huge[..]).unwrap();
        assert!(matches!(
            r.next_update(),
            Err(RecordingError::UpdateTooLarge(_))
        ));
    }
}
