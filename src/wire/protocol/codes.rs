//! The protocol's error codes, numbered after the source documents', each with the [`Action`]
//! a client takes after it, and the ERROR message that carries them.

use crate::model::{ClientVersion, ServerVersion};
use serde::{Deserialize, Serialize};

/// ERROR: why the server ends the session, and what the client should do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// The code.
    pub code: ErrorCode,
    /// What the client should do. Carried on the wire so a client that does not know a newer
    /// code still knows.
    pub action: Action,
    /// Human-readable detail.
    pub message: String,
    /// The client version the error is about (0: none): the changeset refused, the version
    /// under which the server holds another changeset, or the last one the server holds.
    pub client_version: ClientVersion,
    /// The server version the error is about (0: none): the history's horizon, or the
    /// server's latest version.
    pub server_version: ServerVersion,
}

impl ErrorMessage {
    /// An error with the code's own action.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorMessage {
            code,
            action: code.action(),
            message: message.into(),
            client_version: ClientVersion(0),
            server_version: ServerVersion(0),
        }
    }

    /// The same error about client version `cv`.
    pub fn about_client(self, cv: ClientVersion) -> Self {
        ErrorMessage {
            client_version: cv,
            ..self
        }
    }

    /// The same error about server version `v`.
    pub fn about_server(self, v: ServerVersion) -> Self {
        ErrorMessage {
            server_version: v,
            ..self
        }
    }
}

impl std::fmt::Display for ErrorMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}): {}",
            self.code.name(),
            self.code.number(),
            self.action.name(),
            self.message
        )
    }
}

/// What a client does after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Nothing will change by trying again: a configuration, credential or software fault.
    Fatal,
    /// Try again later (with backoff); the cause is expected to pass.
    Retry,
    /// The client's history cannot continue with this realm: it must reset (discard or recover
    /// its local realm and download afresh).
    Reset,
}

impl Action {
    pub(super) fn code(self) -> u8 {
        match self {
            Action::Fatal => 0,
            Action::Retry => 1,
            Action::Reset => 2,
        }
    }

    pub(super) fn from_code(b: u8) -> Option<Action> {
        Some(match b {
            0 => Action::Fatal,
            1 => Action::Retry,
            2 => Action::Reset,
            _ => return None,
        })
    }

    /// The action's name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Fatal => "fatal",
            Action::Retry => "retry",
            Action::Reset => "reset",
        }
    }
}

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $num:literal, $text:literal, $action:ident;)*) => {
        /// Protocol error codes, numbered after the source documents' (1xx concern the
        /// connection's messages, 2xx the session's content).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
            /// A code this version does not know; the message's action says what to do.
            Unknown(u32),
        }

        impl ErrorCode {
            /// Every known code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code's number on the wire.
            pub fn number(self) -> u32 {
                match self {
                    $(ErrorCode::$name => $num,)*
                    ErrorCode::Unknown(n) => n,
                }
            }

            /// The code for a number.
            pub fn from_number(n: u32) -> ErrorCode {
                match n {
                    $($num => ErrorCode::$name,)*
                    n => ErrorCode::Unknown(n),
                }
            }

            /// A short name.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                    ErrorCode::Unknown(_) => "unknown error",
                }
            }

            /// What a client should do after it.
            pub fn action(self) -> Action {
                match self {
                    $(ErrorCode::$name => Action::$action,)*
                    ErrorCode::Unknown(_) => Action::Fatal,
                }
            }
        }
    };
}

error_codes! {
    /// The server is shutting down or dropping the connection for load: come back later.
    ConnectionClosed = 100, "connection closed", Retry;
    /// A frame's tag names no message (or one the receiver never accepts).
    UnknownMessage = 102, "unknown message", Fatal;
    /// A message's fields do not decode.
    MalformedMessage = 103, "malformed message", Fatal;
    /// A frame, changeset or text exceeds the receiver's [`super::Limits`].
    LimitsExceeded = 104, "limits exceeded", Fatal;
    /// BIND names a protocol version the server does not speak.
    WrongProtocolVersion = 105, "wrong protocol version", Fatal;
    /// The client file is bound in another live session (perhaps a connection the server has
    /// not yet seen drop).
    ClientFileBound = 108, "client file bound in another session", Retry;
    /// A message came in a state that does not allow it (e.g. UPLOAD before IDENT).
    MessageOrder = 109, "message out of order", Fatal;
    /// The token is not valid.
    BadAuthentication = 203, "bad authentication", Fatal;
    /// The realm path is not a valid path.
    IllegalRealmPath = 204, "illegal realm path", Fatal;
    /// The user may not read (BIND) or write (UPLOAD) this realm.
    PermissionDenied = 206, "permission denied", Fatal;
    /// The realm's file identifier is not the one the client knew: the realm was recreated or
    /// restored from a backup.
    BadServerFileIdent = 207, "bad server file identifier", Reset;
    /// The client file's identity is unknown, taken, or its salt is wrong.
    BadClientFileIdent = 208, "bad client file identifier", Reset;
    /// A server version the client names is not in the server's history.
    BadServerVersion = 209, "bad server version", Reset;
    /// A client version is out of sequence (a changeset would be skipped).
    BadClientVersion = 210, "bad client version", Reset;
    /// The client has seen a server history the server no longer has.
    DivergingHistories = 211, "diverging histories", Reset;
    /// An uploaded changeset does not decode, or does not apply to the state it is based on:
    /// the client reverts it by a reset (ERROR's client version names it).
    BadChangeset = 212, "bad changeset", Reset;
    /// The server holds fewer of the client's changesets than it acknowledged: it lost some (it
    /// was restored from a backup). ERROR's client version is the last one it holds.
    ChangesetsLost = 213, "changesets lost", Reset;
    /// The server holds another changeset under a client version the client used (a copied
    /// client, or a server restored from another copy). ERROR's client version names it.
    ClientVersionReused = 214, "client version reused", Reset;
    /// An uploaded changeset claims another origin than the uploading client.
    BadOriginFileIdent = 216, "bad origin file identifier", Fatal;
    /// The client needs history the server has trimmed (forgotten): it must start again from
    /// the server's state.
    ClientFileExpired = 222, "client file expired", Reset;
    /// An uploaded changeset changes the schema in a way that conflicts with the realm's: the
    /// client reverts it by a reset (ERROR's client version names it).
    InvalidSchemaChange = 225, "invalid schema change", Reset;
    /// A client that has written or downloaded asked for the server's state: only a new client
    /// starts from it.
    BadStateRequest = 226, "state requested by a client with history", Fatal;
    /// An uploaded changeset is stamped further ahead of the server's clock than the server
    /// allows: the device's clock is wrong (or the timestamp forged). Retrying helps once the
    /// server's clock has caught up with it.
    TimestampAhead = 232, "timestamp ahead of the server's clock", Retry;
    /// What the client's user may read changed in a way a download cannot bring (objects it
    /// holds may no longer be read, existing ones may now be), or the server does not know
    /// what the client holds: the client resets onto the server's state as its user may read
    /// it (spec/permissions.md section 2.5).
    ReadAccessChanged = 233, "read access changed", Reset;
}
