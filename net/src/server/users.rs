//! The config file's users as `__User` objects (spec/permissions.md, section 4): in a realm that
//! uses fine-grained permissions, every user the config lets into the realm gets its `__User`
//! object and private role, so that applications find the role to grant to by the user's id
//! as the source documents' tutorials do (000 L19741-19746), before that user ever connects.
//!
//! The server writes them as a peer of its own with the admin identity, through the ordinary
//! path: a client started from the realm's state writes the transaction, the realm integrates
//! it, and the same records as for an upload (identity issued, writer's identity, changeset)
//! go to storage, so a restart or another process replays them like any other. Realms without
//! permission data get nothing: there every user holds every privilege, and the objects would
//! only cost every client a download.

use super::Config;
use crate::disk;
use crate::{now_ms, random_id};
use objsync::permissions::{self, Identity, USER};
use objsync::session::{ServerEvent, ServerRealm};
use objsync::sync::Client;
use objsync::{ObjKey, PeerId, Store};
use std::io;

/// The users of `config` with access to the realm at `path` that have no `__User` in it yet;
/// none while the realm has no permission data.
pub(super) fn missing(realm: &ServerRealm, config: &Config, path: &str) -> Vec<String> {
    let store = realm.server().replica().store();
    if !permissions::is_active(store) {
        return Vec::new();
    }
    config
        .users_of(path)
        .filter(|id| {
            !store
                .exists(USER, &ObjKey::String((*id).into()))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .collect()
}

/// Writes `users`' `__User` objects into `realm`; returns the records to persist, in order.
pub(super) fn write(realm: &mut ServerRealm, users: &[String]) -> io::Result<Vec<Vec<u8>>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let peer = loop {
        let peer = PeerId(random_id());
        if realm.server().identity(peer).is_none() && realm.server().last_integrated(peer).0 == 0 {
            break peer;
        }
    };
    let mut writer = Client::bootstrap(peer, &realm.server().state_snapshot())
        .map_err(|e| invalid(format!("the realm's own state does not load: {e}")))?;
    let at = writer.stamp(now_ms());
    writer
        .write(at, |tx| {
            users
                .iter()
                .try_for_each(|user| permissions::ensure_user(tx, user))
        })
        .map_err(|e| invalid(format!("writing the config's users: {e}")))?;
    let salt = random_id();
    realm.register(peer, salt);
    realm.set_identity(peer, Identity::Admin);
    let mut events = vec![ServerEvent::Registered { peer, salt }];
    for changeset in writer.upload().changesets {
        realm
            .integrate(peer, changeset.clone())
            .map_err(|e| invalid(format!("integrating the config's users: {e}")))?;
        events.push(ServerEvent::Integrated { peer, changeset });
    }
    let (mut records, _) = disk::records(&events[..1]);
    records.push(disk::identified(peer, &Identity::Admin));
    records.extend(disk::records(&events[1..]).0);
    Ok(records)
}
