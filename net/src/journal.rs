//! An append-only, checksummed record log: the durable form of a server realm and of a client's
//! local realm.
//!
//! Layout: the 8-byte magic [`MAGIC`], then records, each `len: u32 LE | crc: u32 LE | payload`
//! where `crc` is the CRC-32 of the length bytes followed by the payload (so a corrupted length
//! is caught too). The first record is the file's header (what kind of log it is, and its
//! identity), written together with the magic into a temporary file that is synced and renamed
//! into place, so a log that exists always has a complete header.
//!
//! Appending writes a batch of whole records with one `write_all` at the end of the file;
//! durability is [`Journal::sync`] (`fdatasync`), which covers every record appended before it.
//! A crash can leave a torn last record (a short write, or garbage past the last synced byte):
//! opening the log stops at the first record whose length runs past the end of the file or
//! whose CRC does not match, truncates the file there and reports how many bytes were dropped.
//! Nothing synced is ever behind that point, so nothing acknowledged is lost.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every log file (name and format version).
pub const MAGIC: &[u8; 8] = b"OSYNLOG1";

/// Bytes of framing before each record's payload.
const FRAME: usize = 8;

/// An open log, positioned at its end.
#[derive(Debug)]
pub struct Journal {
    file: File,
    len: u64,
}

/// What opening an existing log found.
#[derive(Debug)]
pub struct Opened {
    /// The log, ready to append.
    pub journal: Journal,
    /// Bytes of torn or corrupt tail that were cut off (0 for a clean log).
    pub dropped: u64,
}

impl Journal {
    /// Creates a new log holding `header` as its first record, atomically: the file appears
    /// complete and synced, or not at all. Fails if the file exists (`AlreadyExists`).
    pub fn create(path: &Path, header: &[u8]) -> io::Result<Journal> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = File::create(&tmp)?;
            let mut bytes = MAGIC.to_vec();
            frame(&mut bytes, header);
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        // A hard link, unlike a rename, refuses to replace an existing log.
        let linked = std::fs::hard_link(&tmp, path);
        std::fs::remove_file(&tmp)?;
        linked?;
        // The new name is only durable once the directory entry is.
        File::open(dir)?.sync_all()?;
        Journal::open(path, |_| Ok(())).map(|o| o.journal)
    }

    /// Replaces the log at `path` (if any) with a new one holding only `header`, atomically: a
    /// crash leaves the old log or the new one, whole.
    pub fn replace(path: &Path, header: &[u8]) -> io::Result<Journal> {
        let mut bytes = MAGIC.to_vec();
        frame(&mut bytes, header);
        write_atomically(path, &bytes)?;
        Journal::open(path, |_| Ok(())).map(|o| o.journal)
    }

    /// Opens an existing log and hands every intact record to `replay`, the header first. A
    /// torn or corrupt tail is cut off (and synced) before returning; an error from `replay`
    /// (a record whose checksum is right but whose content makes no sense) fails the open
    /// without touching the file.
    pub fn open(
        path: &Path,
        mut replay: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Opened> {
        let bytes = std::fs::read(path)?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(invalid(format!("{} is not an objsync log", path.display())));
        }
        let mut at = MAGIC.len();
        let mut records = 0u64;
        while let Some((payload, next)) = record_at(&bytes, at) {
            replay(payload).map_err(|e| {
                invalid(format!(
                    "{}: record {records} at byte {at}: {e}",
                    path.display()
                ))
            })?;
            records += 1;
            at = next;
        }
        if records == 0 {
            return Err(invalid(format!("{} has no header", path.display())));
        }
        let file = OpenOptions::new().append(true).open(path)?;
        let dropped = (bytes.len() - at) as u64;
        if dropped > 0 {
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        Ok(Opened {
            journal: Journal {
                file,
                len: at as u64,
            },
            dropped,
        })
    }

    /// Appends records (in one write, so a batch is torn at most at its end). Not durable
    /// until [`sync`](Self::sync). After an error the file's tail is unknown: the caller
    /// stops using this handle and reopens the log, which cuts any partial record.
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> io::Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(
            payloads
                .iter()
                .map(|p| p.as_ref().len() + FRAME)
                .sum::<usize>(),
        );
        for p in payloads {
            frame(&mut bytes, p.as_ref());
        }
        self.file.write_all(&bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// A second handle on the file, for syncing without holding whatever guards this one.
    pub fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The file's length: the offset just after the last record appended.
    pub fn end(&self) -> u64 {
        self.len
    }
}

/// Appends one framed record to `out`.
fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("records are under 4 GiB");
    let len = len.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// The intact record at `at`, and where the next one starts; `None` at the end of the file or
/// at a torn or corrupt record.
fn record_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at + FRAME)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let end = (at + FRAME).checked_add(len as usize)?;
    let payload = bytes.get(at + FRAME..end)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..4]);
    h.update(payload);
    (h.finalize() == crc).then_some((payload, end))
}

/// Writes `bytes` to `path` so that the file is either its old self or exactly `bytes`, even
/// across a crash: a synced temporary file renamed into place, then the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// An `InvalidData` error.
pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Builds a record payload from fixed-width fields.
#[derive(Debug, Default)]
pub struct Put(pub Vec<u8>);

impl Put {
    /// A payload starting with its record tag.
    pub fn tag(tag: u8) -> Put {
        Put(vec![tag])
    }

    /// A little-endian u64.
    pub fn u64(mut self, v: u64) -> Put {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Length-prefixed bytes.
    pub fn bytes(mut self, b: &[u8]) -> Put {
        self = self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads the fields of a record payload, failing with `InvalidData` past its end.
#[derive(Debug)]
pub struct Take<'a>(pub &'a [u8]);

impl<'a> Take<'a> {
    /// The record tag.
    pub fn tag(&mut self) -> io::Result<u8> {
        let (&t, rest) = self
            .0
            .split_first()
            .ok_or_else(|| invalid("empty record"))?;
        self.0 = rest;
        Ok(t)
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = usize::try_from(self.u64()?).map_err(|_| invalid("length out of range"))?;
        self.take(n)
    }

    /// Length-prefixed UTF-8 text.
    pub fn text(&mut self) -> io::Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|e| invalid(e.to_string()))
    }

    /// Fails unless every byte was read.
    pub fn end(&self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} trailing bytes in record",
                self.0.len()
            )))
        }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("record ends early"));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }
}
