//! Snapshots: the versioned binary form of a replica's, a client's or a server's whole state,
//! from which it is loaded to behave exactly as the one saved (same state, same future merges).
//!
//! This module holds the format: the envelope, and a writer and a reader over the changeset
//! format's items (strings in one table, varints, values, keys, types, changesets). Each layer
//! saves its own state with them: the replica its store and list metadata
//! ([`crate::Replica::save`]), the client its replica, unacknowledged changesets and versions
//! ([`crate::Client::save`]), the server its replica, history and peer tables
//! ([`crate::Server::save`]), the realm its identities. spec/snapshot.md specifies every field.
//!
//! # Envelope
//!
//! ```text
//! snapshot = magic version kind strings body checksum
//! magic    = "OSS"                 version = 0x04 (SNAPSHOT_VERSION)
//! kind     = 0x01 replica | 0x02 client | 0x03 server | 0x04 realm | 0x05 server state | 0x06 recovery
//! strings  = count:u64 { length:u64 utf8-bytes }*count   (every string of the body, once)
//! checksum = CRC-32 (IEEE) of every byte before it, 4 bytes little-endian
//! ```
//!
//! Loading checks the checksum before anything else, then decodes with the changeset format's
//! hostile-input reader and rebuilds through the same checks that every write passes, so bytes
//! that are not a snapshot give a typed [`SnapshotError`] and never a panic, and memory stays
//! within a small multiple of the input.

use crate::model::{Changeset, ClientVersion, Error, ListProblem, PeerId, PropRef, ServerVersion};
use crate::wire::{DecodeError, Encoder, Reader};

/// The snapshot format version this crate writes and reads.
pub const SNAPSHOT_VERSION: u8 = 4;

/// The oldest version this reader takes: a version 3 body is a version 4 body without run
/// records (version 4 gave them a flags byte no version 3 node has), so the snapshots a server
/// or client of the previous version saved still load.
const OLDEST_READABLE: u8 = 3;

const MAGIC: [u8; 3] = *b"OSS";
const CHECKSUM_BYTES: usize = 4;

/// What a snapshot holds, so that one kind is never loaded as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Replica = 1,
    Client = 2,
    Server = 3,
    Realm = 4,
    State = 5,
    Recovery = 6,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Replica => "a replica",
            Kind::Client => "a client",
            Kind::Server => "a server",
            Kind::Realm => "a realm",
            Kind::State => "a server's state",
            Kind::Recovery => "a recovery",
        }
    }
}

/// Why bytes could not be loaded as a snapshot. Nothing is loaded when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes are not a well-formed snapshot encoding.
    #[error("not a snapshot: {0}")]
    Decode(#[from] DecodeError),
    /// The checksum does not match: the bytes were damaged.
    #[error(
        "the snapshot is damaged: its checksum is {found:08x}, its bytes sum to {computed:08x}"
    )]
    Checksum {
        /// The checksum stored at the end.
        found: u32,
        /// The checksum of the bytes before it.
        computed: u32,
    },
    /// A snapshot of another kind (a client's where a server's was expected, ...).
    #[error("this is a snapshot of {found}, not of {expected}")]
    Kind {
        /// What was expected.
        expected: &'static str,
        /// What the snapshot holds.
        found: &'static str,
    },
    /// The state does not fit its own schema (a value of the wrong type, a link to nothing, ...).
    #[error("the snapshot's state is invalid: {0}")]
    State(Error),
    /// A list's merge metadata does not form a list, or disagrees with the list's values.
    #[error("the snapshot's metadata of {list} is invalid: {problem}")]
    List {
        /// The list.
        list: PropRef,
        /// What is wrong.
        problem: ListProblem,
    },
    /// Versions or tables that contradict each other (a history out of order, ...).
    #[error("the snapshot is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// What the snapshot was to be loaded into already holds state: a store that is not empty,
    /// or a client that has written or downloaded (only a new client starts from a state).
    #[error("the snapshot must be loaded into an empty replica or a new client")]
    NotEmpty,
}

/// Writes a snapshot's body. See the module documentation.
pub(crate) struct SnapshotWriter {
    kind: Kind,
    enc: Encoder,
}

impl SnapshotWriter {
    pub(crate) fn new(kind: Kind) -> Self {
        SnapshotWriter {
            kind,
            enc: Encoder::with_capacity(4096),
        }
    }

    /// The item writer (values, keys, types, instructions, varints).
    pub(crate) fn items(&mut self) -> &mut Encoder {
        &mut self.enc
    }

    /// A changeset: its header fields and instructions.
    pub(crate) fn changeset(&mut self, cs: &Changeset) {
        let e = &mut self.enc;
        e.u64(cs.origin.0);
        e.u64(cs.timestamp);
        e.u64(cs.client_version.0);
        e.u64(cs.base_version.0);
        e.count(cs.ops.len());
        for op in &cs.ops {
            e.op(op);
        }
    }

    /// The finished snapshot: envelope, string table, body, checksum.
    pub(crate) fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.push(self.kind as u8);
        self.enc.finish(&mut out);
        let sum = crc32fast::hash(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }
}

/// Reads a snapshot's body. See the module documentation.
pub(crate) struct SnapshotReader<'a> {
    r: Reader<'a>,
}

/// Smallest encoded instruction, for bounding counts.
const MIN_OP_BYTES: usize = 3;

impl<'a> SnapshotReader<'a> {
    /// Opens a snapshot of `kind`: checks the checksum, the magic, the version and the kind, and
    /// reads the string table.
    pub(crate) fn open(bytes: &'a [u8], kind: Kind) -> Result<Self, SnapshotError> {
        let head = bytes.get(..MAGIC.len()).unwrap_or(bytes);
        if !MAGIC.starts_with(head) || bytes.len() < MAGIC.len() + 2 + CHECKSUM_BYTES {
            if !MAGIC.starts_with(head) {
                return Err(DecodeError::BadMagic {
                    what: "a snapshot",
                    expected: "OSS",
                    found: head.to_vec(),
                }
                .into());
            }
            return Err(DecodeError::Truncated {
                offset: 0,
                what: "snapshot envelope",
            }
            .into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        let found = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
        let computed = crc32fast::hash(body);
        if found != computed {
            return Err(SnapshotError::Checksum { found, computed });
        }
        let mut r = Reader::new(body);
        r.take(MAGIC.len(), 0, "magic bytes")?;
        let version = r.byte("snapshot version")?;
        if !(OLDEST_READABLE..=SNAPSHOT_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                version,
                supported: SNAPSHOT_VERSION,
            }
            .into());
        }
        let found = r.byte("snapshot kind")?;
        if found != kind as u8 {
            let found = [
                Kind::Replica,
                Kind::Client,
                Kind::Server,
                Kind::Realm,
                Kind::State,
                Kind::Recovery,
            ]
            .into_iter()
            .find(|k| *k as u8 == found)
            .map_or("an unknown kind", Kind::name);
            return Err(SnapshotError::Kind {
                expected: kind.name(),
                found,
            });
        }
        r.table(None)?;
        Ok(SnapshotReader { r })
    }

    /// The item reader.
    pub(crate) fn items(&mut self) -> &mut Reader<'a> {
        &mut self.r
    }

    /// A count of items of at least `min_item` bytes each, bounded by the input left.
    pub(crate) fn count(
        &mut self,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, SnapshotError> {
        Ok(self.r.count(min_item, what)?)
    }

    /// A changeset written by [`SnapshotWriter::changeset`].
    pub(crate) fn changeset(&mut self) -> Result<Changeset, SnapshotError> {
        let r = &mut self.r;
        let origin = PeerId(r.u64("origin peer")?);
        let timestamp = r.u64("timestamp")?;
        let client_version = ClientVersion(r.u64("client version")?);
        let base_version = ServerVersion(r.u64("base version")?);
        let n = r.count(MIN_OP_BYTES, "instructions")?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            ops.push(r.op()?);
        }
        Ok(Changeset {
            origin,
            timestamp,
            client_version,
            base_version,
            ops,
        })
    }

    /// Ends the snapshot: nothing may follow the body.
    pub(crate) fn finish(self) -> Result<(), SnapshotError> {
        Ok(self.r.finish()?)
    }
}
