//! Realms on disk: where a realm's files live, how a realm is rebuilt from them, how a
//! checkpoint replaces them, and how an operator checks and repairs them (`objsync-admin`).
//!
//! A realm at path `/a/b` lives under `DATA/realms/a.d/` as
//! - `b.log`: the journal ([`crate::journal`]): a header naming the realm's file identifier, then
//!   a Registered record per client identity issued, an Identified record per peer saying
//!   which user (or the admin) it writes as, and an Integrated record per changeset as
//!   uploaded;
//! - `b.snap`: the snapshot the journal continues (a `ServerRealm::save`), absent until the
//!   realm was first reopened;
//! - `b.snap.prev` and `b.log.prev`: the generation the last checkpoint replaced. The current
//!   snapshot is that snapshot plus that journal, so a damaged snapshot can be rebuilt without
//!   loss from them and the current journal.
//!
//! Opening a realm ([`open_realm`]) loads the snapshot and replays the journal; integration is
//! deterministic, so that reproduces the history exactly, and a record already in the snapshot
//! is skipped as a duplicate. A damaged snapshot or a corrupt journal (a bad record with intact
//! records after it) keeps the realm closed with an error naming the file and the offset;
//! nothing is cut. [`verify`] reports on a realm without changing it; [`repair`] rebuilds it
//! from the newest snapshot that loads plus every intact record after it, and gives it a new
//! file identifier if anything acknowledged was lost, so that clients reset instead of
//! continuing a history whose versions now name other changesets.

use crate::journal::{invalid, keep_copy, with_suffix, write_atomically, Contents, Journal};
use crate::journal::{Put, Take};
use crate::random_id;
use objsync::permissions::Identity;
use objsync::session::{ServerEvent, ServerRealm};
use objsync::wire;
use objsync::PeerId;
use objsync::ServerVersion;
use std::io;
use std::path::{Path, PathBuf};

/// Journal record tags of a realm.
const HEADER: u8 = 0;
const REGISTERED: u8 = 1;
const INTEGRATED: u8 = 2;
/// Who a peer writes as (spec/permissions.md): checks on its later integrations depend on it.
const IDENTIFIED: u8 = 3;

/// What a realm journal's header record says it is.
const REALM_KIND: &[u8] = b"objsync realm";

/// Where the realm at `path` keeps its journal: one directory level per segment, directories
/// suffixed `.d` and the file `.log`, so `/a` and `/a/b` never collide whatever the names.
pub fn realm_file(data: &Path, path: &str) -> PathBuf {
    let segs: Vec<&str> = path[1..].split('/').collect();
    let mut file = data.join("realms");
    for seg in &segs[..segs.len() - 1] {
        file.push(format!("{seg}.d"));
    }
    file.push(format!("{}.log", segs[segs.len() - 1]));
    file
}

/// The realm path whose journal is `file` under `data` (the inverse of [`realm_file`]).
pub fn realm_path(data: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(data.join("realms")).ok()?;
    let mut segs = Vec::new();
    let parts: Vec<_> = rel.iter().collect();
    let (last, dirs) = parts.split_last()?;
    for dir in dirs {
        segs.push(dir.to_str()?.strip_suffix(".d")?);
    }
    segs.push(last.to_str()?.strip_suffix(".log")?);
    Some(format!("/{}", segs.join("/")))
}

/// Every realm journal under `data`, sorted.
pub fn realm_files(data: &Path) -> io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "log") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    let root = data.join("realms");
    if root.is_dir() {
        walk(&root, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// Where the realm whose journal is `file` keeps its snapshot.
pub fn snapshot_file(file: &Path) -> PathBuf {
    file.with_extension("snap")
}

/// The previous generation's snapshot and journal of the realm whose journal is `file`.
fn previous(file: &Path) -> (PathBuf, PathBuf) {
    (
        with_suffix(&snapshot_file(file), ".prev"),
        with_suffix(file, ".prev"),
    )
}

/// The snapshot at `path`, `None` if there is none; an error naming the file if it does not
/// load (its checksum covers the whole file, so the damage has no narrower offset).
fn load_snapshot(path: &Path) -> io::Result<Option<ServerRealm>> {
    match std::fs::read(path) {
        Ok(bytes) => ServerRealm::load(&bytes).map(Some).map_err(|e| {
            invalid(format!(
                "{} ({} bytes, checked from byte 0): {e}",
                path.display(),
                bytes.len()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rebuilds a realm from journal records, on top of a snapshot or from the header's identity.
struct Replay {
    base: Option<ServerRealm>,
    realm: Option<ServerRealm>,
}

impl Replay {
    fn new(base: Option<ServerRealm>) -> Replay {
        Replay { base, realm: None }
    }

    fn record(&mut self, rec: &[u8]) -> io::Result<()> {
        let mut t = Take(rec);
        match (t.tag()?, self.realm.as_mut()) {
            (HEADER, None) => {
                if t.bytes()? != REALM_KIND {
                    return Err(invalid("not a realm journal"));
                }
                let file_ident = t.u64()?;
                if self
                    .base
                    .as_ref()
                    .is_some_and(|b| b.file_ident() != file_ident)
                {
                    return Err(invalid(
                        "the journal belongs to another realm than the snapshot",
                    ));
                }
                let start = self.base.take();
                self.realm = Some(start.unwrap_or_else(|| ServerRealm::new(file_ident)));
            }
            (_, Some(r)) => return apply(r, rec),
            (tag, None) => return Err(invalid(format!("unexpected record tag {tag}"))),
        }
        t.end()
    }
}

/// Replays one event record (Registered or Integrated) onto `realm`: how a realm is rebuilt
/// from its journal, and how a server process catches up with what others appended.
pub fn apply(realm: &mut ServerRealm, rec: &[u8]) -> io::Result<()> {
    let mut t = Take(rec);
    match t.tag()? {
        REGISTERED => {
            let (peer, salt) = (PeerId(t.u64()?), t.u64()?);
            realm.register(peer, salt);
        }
        INTEGRATED => {
            let peer = PeerId(t.u64()?);
            let cs = wire::decode(t.bytes()?).map_err(|e| invalid(e.to_string()))?;
            realm
                .integrate(peer, cs)
                .map_err(|e| invalid(format!("replaying an integration: {e}")))?;
        }
        IDENTIFIED => {
            let peer = PeerId(t.u64()?);
            let identity = match (t.u64()?, t.text()?) {
                (0, _) => Identity::Admin,
                (_, user) => Identity::User(user.to_string()),
            };
            realm.set_identity(peer, identity);
        }
        tag => return Err(invalid(format!("unexpected record tag {tag}"))),
    }
    t.end()
}

/// Opens the realm journal at `file` (after its snapshot, if any) and replays it. Returns the
/// realm, its journal and the bytes of torn tail dropped. A damaged snapshot or a corrupt
/// journal fails with an error naming the file and the offset, and changes nothing. Also the
/// tests' way to read what a stopped server holds.
pub fn open_realm(file: &Path) -> io::Result<(ServerRealm, Journal, u64)> {
    let snapshot = load_snapshot(&snapshot_file(file)).map_err(|e| {
        invalid(format!(
            "{e} (the realm stays closed: nothing is discarded; see objsync-admin)"
        ))
    })?;
    let mut replay = Replay::new(snapshot);
    let opened = Journal::open(file, |rec| replay.record(rec))?;
    let realm = replay.realm.expect("a journal has a header");
    Ok((realm, opened.journal, opened.dropped))
}

/// Writes the realm's snapshot and starts a fresh journal behind it, keeping the generation it replaces as
/// `.snap.prev` and `.log.prev`. A crash anywhere leaves a snapshot and journal that fit: the
/// new snapshot with the old journal replays it as duplicates.
pub fn checkpoint(file: &Path, realm: &ServerRealm) -> io::Result<Journal> {
    let snapshot = snapshot_file(file);
    let (prev_snapshot, prev_journal) = previous(file);
    if snapshot.exists() {
        keep_copy(&snapshot, &prev_snapshot)?;
    } else if prev_snapshot.exists() {
        // The journal about to become the previous one starts from nothing.
        std::fs::remove_file(&prev_snapshot)?;
    }
    keep_copy(file, &prev_journal)?;
    write_atomically(&snapshot, &realm.save())?;
    Journal::replace(file, &header(realm.file_ident()))
}

/// Creates the journal of a new realm with a random file identifier.
pub fn create_realm(file: &Path) -> io::Result<(ServerRealm, Journal)> {
    let file_ident = random_id();
    let journal = Journal::create(file, &header(file_ident))?;
    Ok((ServerRealm::new(file_ident), journal))
}

fn header(file_ident: u64) -> Vec<u8> {
    Put::tag(HEADER).bytes(REALM_KIND).u64(file_ident).0
}

/// The journal record saying who `peer` writes as.
pub fn identified(peer: PeerId, identity: &Identity) -> Vec<u8> {
    let (kind, user) = match identity {
        Identity::Admin => (0, ""),
        Identity::User(user) => (1, user.as_str()),
    };
    Put::tag(IDENTIFIED)
        .u64(peer.0)
        .u64(kind)
        .bytes(user.as_bytes())
        .0
}

/// The journal records of `events`; and whether the history grew.
pub fn records(events: &[ServerEvent]) -> (Vec<Vec<u8>>, bool) {
    let mut records = Vec::new();
    let mut grew = false;
    for event in events {
        match event {
            ServerEvent::Registered { peer, salt } => {
                records.push(Put::tag(REGISTERED).u64(peer.0).u64(*salt).0);
            }
            ServerEvent::Integrated { peer, changeset } => {
                grew = true;
                let bytes = wire::encode(changeset);
                records.push(Put::tag(INTEGRATED).u64(peer.0).bytes(&bytes).0);
            }
            ServerEvent::Closed(_) => {}
        }
    }
    (records, grew)
}

// ---------------------------------------------------------------------------------------------
// Checking and repairing (objsync-admin)
// ---------------------------------------------------------------------------------------------

/// What [`verify`] found in one realm's files.
#[derive(Debug)]
pub struct Verdict {
    /// The journal file.
    pub file: PathBuf,
    /// The realm's latest server version as its files rebuild it, if they do.
    pub version: Option<ServerVersion>,
    /// A torn tail the server will cut when it opens the realm (harmless: never acknowledged).
    pub torn: Option<u64>,
    /// What keeps the realm closed, if anything: a damaged snapshot, a corrupt journal, a
    /// record that does not replay.
    pub problems: Vec<String>,
    /// What [`repair`] would do about them.
    pub remedy: Option<String>,
}

impl Verdict {
    /// Whether the server can open the realm.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a rebuild from the files found and made.
struct Rebuilt {
    realm: ServerRealm,
    /// Why acknowledged history may be missing from `realm`, if it may.
    lost: Vec<String>,
    /// Problems met on the way.
    problems: Vec<String>,
    torn: Option<u64>,
}

/// Replays the intact records of the journal at `file` onto `replay`, up to the first damage
/// or the first record that does not replay; notes what stopped it.
fn replay_journal(file: &Path, replay: &mut Replay, notes: &mut Notes) -> io::Result<()> {
    let contents = Contents::read(file)?;
    for (i, record) in contents.records().enumerate() {
        if let Err(e) = replay.record(record) {
            notes.lost(format!(
                "{}: record {i} does not replay ({e}); it and everything after it are left out",
                file.display()
            ));
            return Ok(());
        }
    }
    match contents.damage {
        Some(d) if d.is_corruption() => notes.lost(d.to_string()),
        Some(d) => notes.torn = Some(d.len - d.offset),
        None => {}
    }
    Ok(())
}

#[derive(Default)]
struct Notes {
    lost: Vec<String>,
    problems: Vec<String>,
    torn: Option<u64>,
}

impl Notes {
    fn lost(&mut self, why: String) {
        self.problems.push(why.clone());
        self.lost.push(why);
    }
}

/// Rebuilds the realm whose journal is `file` from the newest snapshot that loads and every
/// intact record after it, without writing anything.
fn rebuild(file: &Path) -> io::Result<Rebuilt> {
    let mut notes = Notes::default();
    let snapshot = snapshot_file(file);
    let base = match load_snapshot(&snapshot) {
        Ok(base) => base,
        Err(e) => {
            notes.problems.push(e.to_string());
            let (prev_snapshot, prev_journal) = previous(file);
            if !prev_journal.exists() {
                return Err(invalid(format!(
                    "{e}; there is no earlier generation ({}) to rebuild it from",
                    prev_journal.display()
                )));
            }
            let earlier = load_snapshot(&prev_snapshot).map_err(|p| {
                invalid(format!(
                    "{e}; the earlier generation does not load either: {p}"
                ))
            })?;
            let mut replay = Replay::new(earlier);
            let lost_before = notes.lost.len();
            replay_journal(&prev_journal, &mut replay, &mut notes)?;
            notes.torn = None;
            if notes.lost.len() == lost_before {
                notes.problems.push(format!(
                    "the snapshot can be rebuilt whole from {} and {}",
                    prev_snapshot.display(),
                    prev_journal.display()
                ));
            }
            replay.realm
        }
    };
    let mut replay = Replay::new(base);
    replay_journal(file, &mut replay, &mut notes)?;
    // A journal whose header does not fit the snapshot (a repair cut short between its two
    // writes) adds nothing to it.
    let realm = replay
        .realm
        .or(replay.base)
        .ok_or_else(|| invalid(format!("{}: no intact header", file.display())))?;
    Ok(Rebuilt {
        realm,
        lost: notes.lost,
        problems: notes.problems,
        torn: notes.torn,
    })
}

/// Checks the realm whose journal is `file` without changing anything: does its snapshot
/// load, is its journal intact, does every record replay.
pub fn verify(file: &Path) -> Verdict {
    match rebuild(file) {
        Ok(rebuilt) => {
            let remedy = match (rebuilt.problems.is_empty(), rebuilt.lost.is_empty()) {
                (true, _) => None,
                (false, true) => Some("repair rebuilds it without loss".to_string()),
                (false, false) => Some(format!(
                    "repair rebuilds it up to server version {} and gives it a new file \
                     identifier: clients reset and re-upload what they have",
                    rebuilt.realm.server().version()
                )),
            };
            Verdict {
                file: file.to_path_buf(),
                version: Some(rebuilt.realm.server().version()),
                torn: rebuilt.torn,
                problems: rebuilt.problems,
                remedy,
            }
        }
        Err(e) => Verdict {
            file: file.to_path_buf(),
            version: None,
            torn: None,
            problems: vec![e.to_string()],
            remedy: Some("none: nothing intact to rebuild from".into()),
        },
    }
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct Repaired {
    /// The realm's latest server version after the repair.
    pub version: ServerVersion,
    /// Why acknowledged history may be gone (empty: nothing was lost).
    pub lost: Vec<String>,
    /// The new file identifier, if one was issued because something was lost.
    pub new_file_ident: Option<u64>,
    /// Where the damaged files were kept.
    pub kept: Vec<PathBuf>,
}

/// Rebuilds the realm whose journal is `file` (the server must not be running on its data
/// directory) from the newest snapshot that loads plus every intact record after it, and
/// writes it back as a fresh snapshot and journal. The damaged files are kept beside, suffixed
/// `.damaged`. If anything acknowledged was left out, the realm gets a new file identifier:
/// every client is told to reset, and re-uploads (client reset) what it has.
pub fn repair(file: &Path) -> io::Result<Repaired> {
    let mut rebuilt = rebuild(file)?;
    let mut kept = Vec::new();
    if rebuilt.problems.is_empty() {
        return Ok(Repaired {
            version: rebuilt.realm.server().version(),
            lost: Vec::new(),
            new_file_ident: None,
            kept,
        });
    }
    for damaged in [snapshot_file(file), file.to_path_buf()] {
        if damaged.exists() {
            let copy = with_suffix(&damaged, ".damaged");
            keep_copy(&damaged, &copy)?;
            kept.push(copy);
        }
    }
    let new_file_ident = (!rebuilt.lost.is_empty()).then(|| {
        let ident = random_id();
        rebuilt.realm.reissue(ident);
        ident
    });
    // No earlier generation is kept: the damaged one is no base for anything.
    let (prev_snapshot, prev_journal) = previous(file);
    write_atomically(&snapshot_file(file), &rebuilt.realm.save())?;
    Journal::replace(file, &header(rebuilt.realm.file_ident()))?;
    for stale in [prev_snapshot, prev_journal] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(Repaired {
        version: rebuilt.realm.server().version(),
        lost: rebuilt.lost,
        new_file_ident,
        kept,
    })
}
