//! The real editing trace: the keystrokes of the LaTeX source of the "Automerge paper", typed
//! and revised by one author (259,778 single-character inserts and deletes, final text 104,852
//! characters; the standard "B4" trace of CRDT benchmarks), from the project's shared data
//! folder: `{"startContent", "endContent", "txns": [{"patches": [[pos, del, text], ...]}]}`,
//! gzipped. Each patch deletes `del` characters at `pos` (in Unicode scalar values), then
//! inserts `text` there.
//!
//! Every engine replays it as a list of one-character strings, one list element per character
//! and one transaction per transaction of the trace (every one of which is one patch of one
//! character); objsync through its public API, the list a `list<string>` property. The phases
//! and what they measure are [`crate::trace`]'s.

use crate::trace::{Edit, Trace};
use crate::util::{fail, Res};
use flate2::read::GzDecoder;
use serde_json::Value as Json;
use std::io::Read;
use std::path::Path;

/// Where the trace is, from the workspace: `../shared/data/`.
pub const DEFAULT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/automerge-paper.json.gz"
);

/// The trace, cut to its first `limit` transactions if given, and the text it must leave:
/// `endContent` for the whole trace, the replayed text of the prefix otherwise (in which case
/// the whole trace is not replayed, and `endContent` is not checked).
pub struct RealTrace {
    pub trace: Trace<char>,
    pub expected: Vec<char>,
    /// Whether `expected` is the trace's `endContent`.
    pub whole: bool,
}

/// Reads the trace at `path`, checks that its own replay (on a `Vec<char>`) from
/// `startContent` gives `endContent` when it is whole, and returns it.
pub fn load(path: &Path, limit: Option<usize>) -> Res<RealTrace> {
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "real trace: cannot open {} ({e}); it is the project's shared data file, or pass \
             --trace-file",
            path.display()
        )
    })?;
    let mut text = String::new();
    GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(fail("real trace: decompressing"))?;
    let json: Json = serde_json::from_str(&text).map_err(fail("real trace: parsing"))?;
    drop(text);
    let field = |name: &str| -> Res<&Json> {
        json.get(name)
            .ok_or_else(|| format!("real trace: no field {name:?}"))
    };
    let string = |name: &str| -> Res<&str> {
        field(name)?
            .as_str()
            .ok_or_else(|| format!("real trace: {name:?} is not a string"))
    };
    let start: Vec<char> = string("startContent")?.chars().collect();
    let end: Vec<char> = string("endContent")?.chars().collect();
    let txns = field("txns")?
        .as_array()
        .ok_or("real trace: \"txns\" is not an array")?;
    let take = limit.unwrap_or(txns.len()).min(txns.len());
    let whole = take == txns.len();

    // The start content, if any, is one first transaction.
    let mut trace = Trace::new();
    for (index, &value) in start.iter().enumerate() {
        trace.push(Edit::Insert { index, value });
    }
    trace.commit();
    let mut len = start.len();
    for (t, txn) in txns[..take].iter().enumerate() {
        let bad = |what: &str| format!("real trace: transaction {t}: {what}");
        let patches = txn
            .get("patches")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("no patch array"))?;
        for p in patches {
            let (pos, del, ins) = match p.as_array().map(Vec::as_slice) {
                Some([pos, del, ins]) => (pos.as_u64(), del.as_u64(), ins.as_str()),
                _ => (None, None, None),
            };
            let (Some(pos), Some(del), Some(ins)) = (pos, del, ins) else {
                return Err(bad("a patch is not [position, delete count, text]"));
            };
            let (pos, del) = (pos as usize, del as usize);
            if pos + del > len {
                return Err(bad("a patch reaches past the end of the text"));
            }
            for _ in 0..del {
                trace.push(Edit::Delete { index: pos });
            }
            for (i, value) in ins.chars().enumerate() {
                trace.push(Edit::Insert {
                    index: pos + i,
                    value,
                });
            }
            len = len - del + ins.chars().count();
        }
        trace.commit();
    }
    let replayed = trace.replay();
    let expected = if whole {
        if replayed != end {
            return Err(
                "real trace: replaying it on a plain vector does not give endContent".to_string(),
            );
        }
        end
    } else {
        replayed
    };
    Ok(RealTrace {
        trace,
        expected,
        whole,
    })
}
