//! Files moved inside a session, for both ends. The receiving side writes
//! into a hidden part file of its own in the download directory (created
//! new, mode 0600), hashes as it writes, refuses a byte past the announced
//! size, and only when the sender's SHA-256 matches gives the data its
//! final name, linked in place so it can never replace an existing file
//! (`report (1).pdf` instead). Partial data never sits under the final
//! name; a part file is removed when the transfer does not complete. The
//! sending side reads in chunks and keeps at most [`WINDOW`] bytes
//! unacknowledged, so a file shares the session's stream with the screen
//! instead of queueing ahead of it.

mod name;
mod transfers;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

pub use name::{numbered, safe_name, MAX_NAME_BYTES};
pub use transfers::{Ended, Event, Limits, Offered, Steps, Transfers, Way};

/// Bytes in one chunk message.
pub const CHUNK: usize = 256 * 1024;
/// Bytes a sender may have sent but not seen acknowledged.
pub const WINDOW: u64 = 4 * 1024 * 1024;
/// The receiver acknowledges at least this often.
pub const ACK_EVERY: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("more data than the {0} bytes announced")]
    TooLong(u64),
    #[error("the transfer ended after {got} of {expected} bytes")]
    Short { got: u64, expected: u64 },
    #[error("the data does not match the sender's SHA-256")]
    HashMismatch,
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("no free name for {0} in the download folder")]
    NoFreeName(String),
}

/// A file arriving: a part file of its own until it is complete.
#[derive(Debug)]
pub struct Receiving {
    part: Option<PathBuf>,
    file: File,
    hasher: Sha256,
    expected: u64,
    received: u64,
    acked: u64,
    name: String,
}

impl Receiving {
    /// Starts receiving `raw_name` (made safe) of `size` bytes into `dir`
    /// (created, mode 0700, if missing).
    pub fn start(dir: &Path, raw_name: &str, size: u64) -> Result<Receiving, FileError> {
        create_private_dir(dir)?;
        let name = safe_name(raw_name);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (file, part) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let part = dir.join(format!(".assent-part-{}-{n}", std::process::id()));
            match create_new_private(&part) {
                Ok(f) => break (f, part),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Receiving {
            part: Some(part),
            file,
            hasher: Sha256::new(),
            expected: size,
            received: 0,
            acked: 0,
            name,
        })
    }

    /// The safe name it will get.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Writes the next chunk; `Some(total)` when it is time to acknowledge.
    pub fn write(&mut self, data: &[u8]) -> Result<Option<u64>, FileError> {
        let len = data.len() as u64;
        if self.received + len > self.expected {
            return Err(FileError::TooLong(self.expected));
        }
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.received += len;
        let due = self.received - self.acked >= ACK_EVERY || self.received == self.expected;
        Ok(due.then(|| {
            self.acked = self.received;
            self.received
        }))
    }

    /// Checks the sender's hash and size, then gives the data its final
    /// name (never replacing a file): the path it got.
    pub fn finish(mut self, sha256: &[u8; 32]) -> Result<PathBuf, FileError> {
        if self.received != self.expected {
            return Err(FileError::Short {
                got: self.received,
                expected: self.expected,
            });
        }
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if &digest != sha256 {
            return Err(FileError::HashMismatch);
        }
        self.file.sync_all()?;
        let part = self.part.clone().unwrap_or_default();
        let dir = part.parent().unwrap_or(Path::new("."));
        for n in 0..1000 {
            let name = if n == 0 {
                self.name.clone()
            } else {
                numbered(&self.name, n)
            };
            let target = dir.join(&name);
            // A hard link fails if the target exists: no check-then-rename race.
            match std::fs::hard_link(&part, &target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&part);
                    self.part = None;
                    return Ok(target);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FileError::NoFreeName(self.name.clone()))
    }
}

impl Drop for Receiving {
    /// Whatever did not complete leaves nothing behind.
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            let _ = std::fs::remove_file(part);
        }
    }
}

/// A file going out, read in chunks under the window.
#[derive(Debug)]
pub struct Sending {
    file: File,
    size: u64,
    sent: u64,
    acked: u64,
    hasher: Sha256,
    name: String,
}

impl Sending {
    /// Opens a regular file the local person picked.
    pub fn open(path: &Path) -> Result<Sending, FileError> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(FileError::NotAFile(path.display().to_string()));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Sending {
            file,
            size: meta.len(),
            sent: 0,
            acked: 0,
            hasher: Sha256::new(),
            name: safe_name(&name),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether a chunk may go now: data left and room in the window.
    pub fn may_send(&self) -> bool {
        self.sent < self.size && self.sent - self.acked < WINDOW
    }

    /// The next chunk (empty once everything was read).
    pub fn next_chunk(&mut self) -> Result<Vec<u8>, FileError> {
        let left = self.size - self.sent;
        let mut buf = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        self.file.read_exact(&mut buf)?;
        self.hasher.update(&buf);
        self.sent += buf.len() as u64;
        Ok(buf)
    }

    pub fn on_ack(&mut self, received: u64) {
        self.acked = received.min(self.sent).max(self.acked);
    }

    /// Everything was read: its SHA-256.
    pub fn digest(&self) -> Option<[u8; 32]> {
        (self.sent == self.size).then(|| self.hasher.clone().finalize().into())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn create_new_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The SHA-256 of a file, read in chunks (for checks and tests).
pub fn sha256_of(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests;
