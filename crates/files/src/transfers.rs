//! One session's transfers, the same at both ends: at most one file out
//! and one in at a time, an offer waiting for the local person's answer,
//! the limits, and what to send and tell for each message. The caller
//! owns the permission (it passes `allowed`), the window, the audit and
//! the channel.

use std::path::{Path, PathBuf};

use assent_proto::files::{FileMsg, FileOutcome};

use crate::{safe_name, FileError, Receiving, Sending};

/// Which way, seen from this end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Out,
    In,
}

/// Limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, in bytes.
    pub max_file: u64,
    /// Most bytes accepted in either direction in one session.
    pub max_session: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file: 2 << 30,
            max_session: 8 << 30,
        }
    }
}

/// A file the other side offers, waiting for this side's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub id: u32,
    /// Already made safe.
    pub name: String,
    pub size: u64,
}

/// How one transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub way: Way,
    pub name: String,
    /// Bytes moved (the announced size when completed).
    pub bytes: u64,
    /// The content's SHA-256 when it is known (completed or sent whole).
    pub sha256: [u8; 32],
    pub outcome: FileOutcome,
    /// Where a received file now is.
    pub path: Option<PathBuf>,
}

/// What the caller shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Ask the local person (unless accepted automatically).
    Offered(Offered),
    Progress {
        way: Way,
        name: String,
        done: u64,
        size: u64,
    },
    Ended(Ended),
}

/// What one step produced: messages for the other side, news for here.
#[derive(Debug, Default)]
pub struct Steps {
    pub send: Vec<FileMsg>,
    pub events: Vec<Event>,
}

impl Steps {
    fn end(&mut self, ended: Ended) {
        self.events.push(Event::Ended(ended));
    }
}

struct Out {
    id: u32,
    sending: Sending,
    streaming: bool,
}

struct In {
    id: u32,
    receiving: Receiving,
    size: u64,
}

/// The session's transfers.
pub struct Transfers {
    dir: PathBuf,
    limits: Limits,
    /// Bytes of files accepted this session, both ways.
    moved: u64,
    next_id: u32,
    outgoing: Option<Out>,
    incoming: Option<In>,
    offered: Option<Offered>,
}

impl Transfers {
    /// Received files go into `dir`.
    pub fn new(dir: PathBuf, limits: Limits) -> Transfers {
        Transfers {
            dir,
            limits,
            moved: 0,
            next_id: 0,
            outgoing: None,
            incoming: None,
            offered: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offer waiting for this side's answer.
    pub fn offered(&self) -> Option<&Offered> {
        self.offered.as_ref()
    }

    /// Whether a chunk may go now.
    pub fn may_send(&self) -> bool {
        self.outgoing
            .as_ref()
            .is_some_and(|o| o.streaming && o.sending.may_send())
    }

    /// Offers the file at `path` (picked by the local person); the words
    /// for them when it cannot be.
    pub fn offer(&mut self, path: &Path) -> Result<FileMsg, String> {
        if self.outgoing.is_some() {
            return Err("a file is already being sent: wait for it or cancel it".into());
        }
        let sending =
            Sending::open(path).map_err(|e| format!("cannot send {}: {e}", path.display()))?;
        self.within_limits(sending.size())?;
        self.next_id += 1;
        let msg = FileMsg::Offer {
            id: self.next_id,
            name: sending.name().to_string(),
            size: sending.size(),
        };
        self.outgoing = Some(Out {
            id: self.next_id,
            sending,
            streaming: false,
        });
        Ok(msg)
    }

    fn within_limits(&self, size: u64) -> Result<(), String> {
        let l = self.limits;
        if size > l.max_file {
            return Err(format!(
                "the file is {size} bytes; the limit is {} bytes",
                l.max_file
            ));
        }
        if self.moved.saturating_add(size) > l.max_session {
            return Err(format!(
                "this session has moved {} bytes of files; the limit is {} bytes",
                self.moved, l.max_session
            ));
        }
        Ok(())
    }

    /// The local person's answer to the offer waiting.
    pub fn answer(&mut self, accept: bool) -> Steps {
        let mut steps = Steps::default();
        let Some(o) = self.offered.take() else {
            return steps;
        };
        if !accept {
            steps.send.push(FileMsg::Outcome {
                id: o.id,
                outcome: FileOutcome::Declined,
            });
            steps.end(ended(Way::In, &o.name, 0, FileOutcome::Declined));
            return steps;
        }
        match Receiving::start(&self.dir, &o.name, o.size) {
            Ok(receiving) => {
                self.moved += o.size;
                steps.send.push(FileMsg::Answer {
                    id: o.id,
                    accepted: true,
                });
                self.incoming = Some(In {
                    id: o.id,
                    receiving,
                    size: o.size,
                });
            }
            Err(e) => {
                let _ = e;
                steps.send.push(FileMsg::Outcome {
                    id: o.id,
                    outcome: FileOutcome::Failed,
                });
                steps.end(ended(Way::In, &o.name, 0, FileOutcome::Failed));
            }
        }
        steps
    }

    /// A message from the other side. `allowed`: files are allowed now;
    /// `auto_accept`: an offer needs no answer from the local person.
    pub fn on_msg(&mut self, msg: FileMsg, allowed: bool, auto_accept: bool) -> Steps {
        match msg {
            FileMsg::Offer { id, name, size } => self.on_offer(
                Offered {
                    id,
                    name: safe_name(&name),
                    size,
                },
                allowed,
                auto_accept,
            ),
            FileMsg::Chunk { id, data } => self.on_chunk(id, &data),
            FileMsg::End { id, sha256 } => self.on_end(id, &sha256),
            FileMsg::Cancel { id, from_sender } => self.on_cancel(id, from_sender),
            FileMsg::Answer { id, accepted } => self.on_answer(id, accepted),
            FileMsg::Ack { id, received } => {
                if let Some(o) = self.outgoing.as_mut().filter(|o| o.id == id) {
                    o.sending.on_ack(received);
                }
                Steps::default()
            }
            FileMsg::Outcome { id, outcome } => self.on_outcome(id, outcome),
        }
    }

    fn on_offer(&mut self, offer: Offered, allowed: bool, auto_accept: bool) -> Steps {
        let mut steps = Steps::default();
        let refusal = if !allowed {
            Some(FileOutcome::NotAllowed)
        } else if self.incoming.is_some() || self.offered.is_some() {
            Some(FileOutcome::Cancelled)
        } else if self.within_limits(offer.size).is_err() {
            Some(FileOutcome::TooLarge)
        } else {
            None
        };
        if let Some(outcome) = refusal {
            steps.send.push(FileMsg::Outcome {
                id: offer.id,
                outcome,
            });
            steps.end(ended(Way::In, &offer.name, 0, outcome));
            return steps;
        }
        self.offered = Some(offer.clone());
        if auto_accept {
            return self.answer(true);
        }
        steps.events.push(Event::Offered(offer));
        steps
    }

    fn on_chunk(&mut self, id: u32, data: &[u8]) -> Steps {
        let mut steps = Steps::default();
        let Some(i) = self.incoming.as_mut().filter(|i| i.id == id) else {
            return steps;
        };
        match i.receiving.write(data) {
            Ok(Some(received)) => {
                steps.send.push(FileMsg::Ack { id, received });
                let (name, size) = (i.receiving.name().to_string(), i.size);
                steps.events.push(Event::Progress {
                    way: Way::In,
                    name,
                    done: received,
                    size,
                });
            }
            Ok(None) => {}
            Err(e) => self.fail_incoming(&mut steps, &e),
        }
        steps
    }

    fn on_end(&mut self, id: u32, sha256: &[u8; 32]) -> Steps {
        let mut steps = Steps::default();
        let Some(i) = self.incoming.take_if(|i| i.id == id) else {
            return steps;
        };
        let name = i.receiving.name().to_string();
        match i.receiving.finish(sha256) {
            Ok(path) => {
                steps.send.push(FileMsg::Outcome {
                    id,
                    outcome: FileOutcome::Completed,
                });
                let stored = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(name);
                steps.end(Ended {
                    way: Way::In,
                    name: stored,
                    bytes: i.size,
                    sha256: *sha256,
                    outcome: FileOutcome::Completed,
                    path: Some(path),
                });
            }
            Err(e) => {
                let outcome = outcome_of(&e);
                steps.send.push(FileMsg::Outcome { id, outcome });
                steps.end(ended(Way::In, &name, 0, outcome));
            }
        }
        steps
    }

    fn fail_incoming(&mut self, steps: &mut Steps, e: &FileError) {
        if let Some(i) = self.incoming.take() {
            let outcome = outcome_of(e);
            steps.send.push(FileMsg::Cancel {
                id: i.id,
                from_sender: false,
            });
            steps.send.push(FileMsg::Outcome { id: i.id, outcome });
            steps.end(ended(
                Way::In,
                i.receiving.name(),
                i.receiving.received(),
                outcome,
            ));
        }
    }

    /// The other side stops one of its transfers (`from_sender`: one it
    /// sends us) or one of ours it receives.
    fn on_cancel(&mut self, id: u32, from_sender: bool) -> Steps {
        let mut steps = Steps::default();
        if !from_sender {
            if let Some(o) = self.outgoing.take_if(|o| o.id == id) {
                let sent = o.sending.sent();
                steps.end(ended(
                    Way::Out,
                    o.sending.name(),
                    sent,
                    FileOutcome::Cancelled,
                ));
            }
            return steps;
        }
        if let Some(i) = self.incoming.take_if(|i| i.id == id) {
            let got = i.receiving.received();
            steps.end(ended(
                Way::In,
                i.receiving.name(),
                got,
                FileOutcome::Cancelled,
            ));
        }
        if let Some(o) = self.offered.take_if(|o| o.id == id) {
            steps.end(ended(Way::In, &o.name, 0, FileOutcome::Cancelled));
        }
        steps
    }

    fn on_answer(&mut self, id: u32, accepted: bool) -> Steps {
        let mut steps = Steps::default();
        match self.outgoing.as_mut().filter(|o| o.id == id) {
            Some(o) if accepted => o.streaming = true,
            Some(_) => {
                if let Some(o) = self.outgoing.take() {
                    steps.end(ended(Way::Out, o.sending.name(), 0, FileOutcome::Declined));
                }
            }
            None => {}
        }
        steps
    }

    fn on_outcome(&mut self, id: u32, outcome: FileOutcome) -> Steps {
        let mut steps = Steps::default();
        if let Some(o) = self.outgoing.take_if(|o| o.id == id) {
            let sha256 = o.sending.digest().unwrap_or_default();
            steps.end(Ended {
                way: Way::Out,
                name: o.sending.name().to_string(),
                bytes: o.sending.sent(),
                sha256,
                outcome,
                path: None,
            });
            if outcome == FileOutcome::Completed {
                self.moved += o.sending.size();
            }
        }
        steps
    }

    /// The next chunk of the file going out, and its end once all is read.
    pub fn next_chunk(&mut self) -> Steps {
        let mut steps = Steps::default();
        let Some(o) = self.outgoing.as_mut().filter(|o| o.streaming) else {
            return steps;
        };
        match o.sending.next_chunk() {
            Ok(data) => {
                let id = o.id;
                steps.send.push(FileMsg::Chunk { id, data });
                if let Some(sha256) = o.sending.digest() {
                    o.streaming = false;
                    steps.send.push(FileMsg::End { id, sha256 });
                }
                let (name, done, size) = (
                    o.sending.name().to_string(),
                    o.sending.sent(),
                    o.sending.size(),
                );
                steps.events.push(Event::Progress {
                    way: Way::Out,
                    name,
                    done,
                    size,
                });
            }
            Err(_) => {
                if let Some(o) = self.outgoing.take() {
                    steps.send.push(FileMsg::Cancel {
                        id: o.id,
                        from_sender: true,
                    });
                    steps.end(ended(
                        Way::Out,
                        o.sending.name(),
                        o.sending.sent(),
                        FileOutcome::Failed,
                    ));
                }
            }
        }
        steps
    }

    /// Stops everything in progress (the local person cancelled, files were
    /// turned off, or the session ends): the other side is told, partial
    /// data removed.
    pub fn cancel_all(&mut self) -> Steps {
        let mut steps = Steps::default();
        if let Some(o) = self.offered.take() {
            steps.send.push(FileMsg::Outcome {
                id: o.id,
                outcome: FileOutcome::Cancelled,
            });
            steps.end(ended(Way::In, &o.name, 0, FileOutcome::Cancelled));
        }
        if let Some(i) = self.incoming.take() {
            steps.send.push(FileMsg::Cancel {
                id: i.id,
                from_sender: false,
            });
            let got = i.receiving.received();
            steps.end(ended(
                Way::In,
                i.receiving.name(),
                got,
                FileOutcome::Cancelled,
            ));
        }
        if let Some(o) = self.outgoing.take() {
            steps.send.push(FileMsg::Cancel {
                id: o.id,
                from_sender: true,
            });
            steps.end(ended(
                Way::Out,
                o.sending.name(),
                o.sending.sent(),
                FileOutcome::Cancelled,
            ));
        }
        steps
    }
}

fn ended(way: Way, name: &str, bytes: u64, outcome: FileOutcome) -> Ended {
    Ended {
        way,
        name: name.to_string(),
        bytes,
        sha256: [0; 32],
        outcome,
        path: None,
    }
}

fn outcome_of(e: &FileError) -> FileOutcome {
    match e {
        FileError::TooLong(_) | FileError::Short { .. } | FileError::HashMismatch => {
            FileOutcome::Corrupted
        }
        _ => FileOutcome::Failed,
    }
}
