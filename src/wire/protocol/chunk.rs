//! Changesets in pieces: a changeset of any size travels as [`Chunk`]s that each fit a frame,
//! cut by [`Outgoing`] on the sending side and put together by [`Reassembly`] on the
//! receiving side, which never buffers more than what actually arrived.

use super::CHUNK_OVERHEAD;
use crate::wire::MessageError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A piece of one encoded changeset: `data` is `bytes[offset..offset + data.len()]` of an
/// encoding `total` bytes long. `head` names the changeset: its client version in uploads,
/// [`DownloadHead`](super::DownloadHead) in downloads. Chunks of one changeset travel in order and back to back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk<H> {
    /// Which changeset this is part of.
    pub head: H,
    /// The encoded changeset's full length.
    pub total: u64,
    /// Where `data` starts within it.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl<H> Chunk<H> {
    /// Whether this chunk ends its changeset.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.data.len() as u64) == self.total
    }
}

/// An encoded changeset on its way out, cut into chunks as room allows in each message.
#[derive(Debug, Clone)]
pub struct Outgoing<H> {
    head: H,
    bytes: Arc<[u8]>,
    sent: usize,
}

impl<H: Copy> Outgoing<H> {
    /// A changeset's encoding, none of it sent yet.
    pub fn new(head: H, bytes: Arc<[u8]>) -> Self {
        Outgoing {
            head,
            bytes,
            sent: 0,
        }
    }

    /// The same, with its first `sent` bytes already delivered (a transfer resumed after a
    /// dropped connection); at most all of them.
    pub fn resume(head: H, bytes: Arc<[u8]>, sent: usize) -> Self {
        let sent = sent.min(bytes.len());
        Outgoing { head, bytes, sent }
    }

    /// Cuts the next chunk to fit `budget` (the bytes left in the message being filled, which
    /// it decreases). A chunk always carries at least one byte, so a sender whose limit is
    /// smaller than the framing still makes progress.
    pub fn next_chunk(&mut self, budget: &mut usize) -> Chunk<H> {
        let room = budget.saturating_sub(CHUNK_OVERHEAD).max(1);
        let n = room.min(self.bytes.len() - self.sent);
        let chunk = Chunk {
            head: self.head,
            total: self.bytes.len() as u64,
            offset: self.sent as u64,
            data: self.bytes[self.sent..self.sent + n].to_vec(),
        };
        self.sent += n;
        *budget = budget.saturating_sub(n + CHUNK_OVERHEAD);
        chunk
    }

    /// Whether every byte is out.
    pub fn is_done(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Which changeset this is.
    pub fn head(&self) -> H {
        self.head
    }
}

/// Reassembles chunked changesets on the receiving side. It holds at most one incomplete
/// changeset, growing its buffer only by the bytes that actually arrive (never by a claimed
/// total), so a peer cannot make it allocate more than it sends.
#[derive(Debug)]
pub struct Reassembly<H> {
    partial: Option<(H, u64, Vec<u8>)>,
}

impl<H> Default for Reassembly<H> {
    fn default() -> Self {
        Reassembly { partial: None }
    }
}

impl<H: PartialEq + Copy> Reassembly<H> {
    /// Takes the next chunk; returns the changeset's complete bytes when it ends one.
    pub fn push(&mut self, chunk: Chunk<H>) -> Result<Option<(H, Vec<u8>)>, MessageError> {
        let (head, total, mut buf) = match self.partial.take() {
            Some((head, total, buf)) => {
                if head != chunk.head || total != chunk.total {
                    return Err(MessageError::Chunk(
                        "a new changeset began before the last one ended",
                    ));
                }
                (head, total, buf)
            }
            None => (chunk.head, chunk.total, Vec::new()),
        };
        if chunk.offset != buf.len() as u64 {
            return Err(MessageError::Chunk(
                "offset does not continue the previous chunk",
            ));
        }
        let last = chunk.is_last();
        if buf.is_empty() {
            buf = chunk.data;
        } else {
            buf.extend_from_slice(&chunk.data);
        }
        if last {
            Ok(Some((head, buf)))
        } else {
            self.partial = Some((head, total, buf));
            Ok(None)
        }
    }

    /// Bytes buffered for the incomplete changeset.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.2.len())
    }

    /// Drops an incomplete changeset (the connection it came on is gone).
    pub fn clear(&mut self) {
        self.partial = None;
    }
}
