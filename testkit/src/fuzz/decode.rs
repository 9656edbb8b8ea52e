//! Decoders fed arbitrary bytes: they must never panic, and whatever they accept must
//! re-encode to bytes that decode to the same value.

use objsync::wire;
use objsync::wire::{ClientMessage, Limits, ServerMessage};
use objsync::PeerId;

/// Limits small enough that short inputs reach the "too large" paths.
const TIGHT: Limits = Limits {
    max_message: 96,
    max_changeset: 64,
    max_text: 8,
};

/// `bytes` as a changeset.
///
/// The decoder accepts any string table (unused or repeated entries, any order), so the input
/// itself need not be canonical; the encoder's output is: it decodes to the same changeset and
/// re-encodes to itself. The table is the only freedom: two encodings of one changeset with the
/// same string table are the same bytes.
pub fn changeset(bytes: &[u8]) {
    let Ok(cs) = wire::decode(bytes) else {
        return;
    };
    let canonical = wire::encode(&cs);
    let again = wire::decode(&canonical)
        .unwrap_or_else(|e| panic!("re-encoding of {cs:?} does not decode: {e}"));
    assert_eq!(again, cs, "decode(encode(cs)) != cs");
    assert_eq!(
        wire::encode(&again),
        canonical,
        "encoding is not a fixpoint"
    );
    if string_table(bytes) == string_table(&canonical) {
        assert_eq!(
            bytes,
            &canonical[..],
            "same string table, different bytes for {cs:?}"
        );
    }
}

/// The string table of a changeset that decoded, as raw entries.
fn string_table(bytes: &[u8]) -> Vec<&[u8]> {
    let mut pos = 4; // magic and format version
    for _ in 0..4 {
        varint(bytes, &mut pos); // origin, timestamp, client version, base version
    }
    let n = varint(bytes, &mut pos);
    let mut table = Vec::new();
    for _ in 0..n {
        let len = varint(bytes, &mut pos) as usize;
        table.push(&bytes[pos..pos + len]);
        pos += len;
    }
    table
}

/// Reads an LEB128 varint at `pos` (already validated by the decoder).
fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return v;
        }
    }
}

/// `bytes` as a client and as a server message (the tags are disjoint, so at most one
/// succeeds). Messages have exactly one encoding: re-encoding gives back the input.
pub fn message(bytes: &[u8]) {
    let default = Limits::default();
    if let Ok(msg) = ClientMessage::decode(bytes, &default) {
        assert_eq!(
            msg.encode(),
            bytes,
            "client message {msg:?} re-encodes differently"
        );
        if let ClientMessage::Upload(u) = &msg {
            for c in &u.chunks {
                nested_changeset(c.offset, c.total, &c.data);
            }
        }
    }
    if let Ok(msg) = ServerMessage::decode(bytes, &default) {
        assert_eq!(
            msg.encode(),
            bytes,
            "server message {msg:?} re-encodes differently"
        );
        if let ServerMessage::Download(d) = &msg {
            for c in &d.chunks {
                nested_changeset(c.offset, c.total, &c.data);
            }
        }
    }
    // Tighter limits only refuse more: whatever passes them decodes the same under the default.
    if let Ok(msg) = ClientMessage::decode(bytes, &TIGHT) {
        assert_eq!(ClientMessage::decode(bytes, &default), Ok(msg));
    }
    if let Ok(msg) = ServerMessage::decode(bytes, &TIGHT) {
        assert_eq!(ServerMessage::decode(bytes, &default), Ok(msg));
    }
}

/// A chunk holding a whole changeset is decoded as one, so message inputs reach the changeset
/// decoder too.
fn nested_changeset(offset: u64, total: u64, data: &[u8]) {
    if offset == 0 && total == data.len() as u64 {
        changeset(data);
    }
}

/// `bytes` as every kind of snapshot (a replica, a client, a server, a server's state), once as
/// given and once with its last four bytes replaced by the checksum of the rest, so that
/// mutations reach the decoder behind the checksum. Whatever loads saves to a snapshot that loads
/// again and saves to the same bytes.
pub fn snapshot(bytes: &[u8]) {
    use objsync::sync::{Client, Server};
    use objsync::Replica;
    let mut fixed = bytes.to_vec();
    if let Some(body) = bytes.len().checked_sub(4) {
        let sum = crc32fast::hash(&bytes[..body]);
        fixed[body..].copy_from_slice(&sum.to_le_bytes());
    }
    for input in [bytes, &fixed[..]] {
        if let Ok(r) = Replica::load(input) {
            let saved = r.save();
            let again = Replica::load(&saved).expect("a saved replica loads");
            assert_eq!(again.save(), saved, "replica: save(load(save)) != save");
        }
        if let Ok(c) = Client::load(input) {
            let saved = c.save();
            let again = Client::load(&saved).expect("a saved client loads");
            assert_eq!(again.save(), saved, "client: save(load(save)) != save");
        }
        if let Ok(s) = Server::load(input) {
            let saved = s.save();
            let again = Server::load(&saved).expect("a saved server loads");
            assert_eq!(again.save(), saved, "server: save(load(save)) != save");
            assert_eq!(again.history(), s.history());
        }
        if let Ok(r) = objsync::session::ServerRealm::load(input) {
            let saved = r.save();
            let again = objsync::session::ServerRealm::load(&saved).expect("a saved realm loads");
            assert_eq!(again.save(), saved, "realm: save(load(save)) != save");
        }
        if let Ok(c) = Client::bootstrap(PeerId(7), input) {
            assert_eq!(c.unacknowledged().len(), 0);
            let saved = c.save();
            let again = Client::load(&saved).expect("a bootstrapped client saves and loads");
            assert_eq!(again.save(), saved, "bootstrap: save(load(save)) != save");
        }
    }
}
