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
//!
//! Reading tells two kinds of damage apart ([`Damage`]). A crash can leave a torn last record (a
//! short write, or garbage past the last synced byte): nothing valid follows it, nothing synced
//! is behind it, so opening cuts it off and reports how many bytes went. A record that fails
//! its checksum with a valid record somewhere after it is something else: a flipped bit, a
//! bad sector, an edit. What follows it was acknowledged, so opening refuses the log with an
//! error naming the file and the offset, and leaves the file as it is for an operator (the
//! `objsync-admin` tool) to look at and repair.

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
    /// Bytes of torn tail that were cut off (0 for a clean log).
    pub dropped: u64,
}

/// Where and how a log is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The log file.
    pub path: PathBuf,
    /// Byte offset of the first record that is cut short or fails its checksum.
    pub offset: u64,
    /// How many intact records precede it (the header included).
    pub record: u64,
    /// The file's length.
    pub len: u64,
    /// Where the next intact record starts, if one does: then this is corruption, not a torn
    /// tail.
    pub resumes_at: Option<u64>,
}

impl Damage {
    /// Whether intact records follow the damage: acknowledged history would be lost by cutting
    /// there.
    pub fn is_corruption(&self) -> bool {
        self.resumes_at.is_some()
    }

    /// The [`Damage`] inside an error [`Journal::open`] returned, if that is what failed.
    pub fn of(error: &io::Error) -> Option<&Damage> {
        error.get_ref()?.downcast_ref::<Damage>()
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.resumes_at {
            Some(at) => write!(
                f,
                "{}: corrupt record {} at byte {} (intact records resume at byte {at} of {}); \
                 nothing was cut: repair it with objsync-admin",
                self.path.display(),
                self.record,
                self.offset,
                self.len
            ),
            None => write!(
                f,
                "{}: torn tail of {} bytes at byte {} (record {})",
                self.path.display(),
                self.len - self.offset,
                self.offset,
                self.record
            ),
        }
    }
}

impl std::error::Error for Damage {}

/// A log read whole: its intact records up to the first damage, and the damage.
#[derive(Debug)]
pub struct Contents {
    bytes: Vec<u8>,
    /// Payload ranges of the intact records before any damage, the header first.
    records: Vec<std::ops::Range<usize>>,
    /// The end of the last of them.
    end: usize,
    /// What is wrong after them, if anything.
    pub damage: Option<Damage>,
}

impl Contents {
    /// Reads the log at `path` without changing it.
    pub fn read(path: &Path) -> io::Result<Contents> {
        let bytes = std::fs::read(path)?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(invalid(format!("{} is not an objsync log", path.display())));
        }
        let mut at = MAGIC.len();
        let mut records = Vec::new();
        while let Some((payload, next)) = record_at(&bytes, at) {
            records.push(at + FRAME..at + FRAME + payload.len());
            at = next;
        }
        let damage = (at < bytes.len()).then(|| Damage {
            path: path.to_path_buf(),
            offset: at as u64,
            record: records.len() as u64,
            len: bytes.len() as u64,
            resumes_at: (at + 1..bytes.len())
                .find(|&p| record_at(&bytes, p).is_some())
                .map(|p| p as u64),
        });
        Ok(Contents {
            bytes,
            records,
            end: at,
            damage,
        })
    }

    /// The intact records before any damage, the header first.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|r| &self.bytes[r.clone()])
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.records.len()
    }
}

impl Journal {
    /// Creates a new log holding `header` as its first record, atomically: the file appears
    /// complete and synced, or not at all. Fails if the file exists (`AlreadyExists`).
    pub fn create(path: &Path, header: &[u8]) -> io::Result<Journal> {
        let dir = path.parent().unwrap_or(Path::new("."));
        create_dirs(dir)?;
        let tmp = with_suffix(path, ".tmp");
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
        Journal::rewrite(path, &[header])
    }

    /// Replaces the log at `path` (if any) with a new one holding `records` (the header
    /// first), atomically: a crash leaves the old log or the new one, whole.
    pub fn rewrite<P: AsRef<[u8]>>(path: &Path, records: &[P]) -> io::Result<Journal> {
        let mut bytes = MAGIC.to_vec();
        for record in records {
            frame(&mut bytes, record.as_ref());
        }
        write_atomically(path, &bytes)?;
        Journal::open(path, |_| Ok(())).map(|o| o.journal)
    }

    /// Opens an existing log and hands every intact record to `replay`, the header first. A
    /// torn tail is cut off (and synced) before returning. A corrupt record (one with intact
    /// records after it) fails the open with a [`Damage`] error before anything is replayed,
    /// and an error from `replay` (a record whose checksum is right but whose content makes no
    /// sense) fails it too; neither touches the file.
    pub fn open(
        path: &Path,
        mut replay: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Opened> {
        let contents = Contents::read(path)?;
        if let Some(damage) = contents.damage.as_ref().filter(|d| d.is_corruption()) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, damage.clone()));
        }
        if contents.count() == 0 {
            return Err(invalid(format!("{} has no header", path.display())));
        }
        for (i, record) in contents.records().enumerate() {
            replay(record).map_err(|e| {
                let at = contents.records[i].start - FRAME;
                invalid(format!("{}: record {i} at byte {at}: {e}", path.display()))
            })?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        let at = contents.end as u64;
        let dropped = contents.bytes.len() as u64 - at;
        if dropped > 0 {
            file.set_len(at)?;
            file.sync_all()?;
        }
        Ok(Opened {
            journal: Journal { file, len: at },
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
    create_dirs(dir)?;
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Makes `to` the file `from` is, under a second name, atomically replacing whatever `to` was:
/// a hard link made under a temporary name, renamed into place, the directory synced. `from`
/// is untouched. What keeps the generation of a realm that a checkpoint replaces.
pub fn keep_copy(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = with_suffix(to, ".tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::hard_link(from, &tmp)?;
    std::fs::rename(&tmp, to)?;
    File::open(to.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Creates `dir` and any missing parents durably: each directory created is synced into its
/// parent, so that a crash cannot lose the path to a file synced inside it.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    create_dirs(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Another process or thread made it meanwhile; it syncs its own entry.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    File::open(parent)?.sync_all()
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
