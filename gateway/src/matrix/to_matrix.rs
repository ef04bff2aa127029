//! Calls from SIP to Matrix users: which of the local domain's addresses are Matrix users
//! ([`ToMatrix`], given to the local domain's call routing), and the room a call goes through.
//!
//! The caller's ghost (`@sip_bob=40example.com:server` for `bob@example.com`) calls from a
//! direct room with the Matrix user: one it is in already (the user joined, or is still
//! invited), else one it opens now, inviting the user. The SIP caller hears ringing meanwhile;
//! a user who does not join within [`JOIN_WAIT`] (or declines the room) is unavailable (480,
//! with a `Warning` saying why). Encrypted rooms cannot carry the bridge's calls (their
//! events arrive as `m.room.encrypted`, which the bridge cannot read): a call whose room is
//! encrypted is refused, 480, and the ghost says why in the room. The worker then places the
//! call there ([`super::calls`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sip::driver::{CallCommand, CallEvents, CallHandle, IncomingCall, SipHandle};
use sip::{CallEvent, Warning};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Bridge, ghosts};
use crate::config::{MatrixConfig, is_user_id};

/// How long a Matrix user has to join the room the caller's ghost invited them to.
pub(super) const JOIN_WAIT: Duration = Duration::from_secs(30);
/// How often the room is looked at meanwhile.
const JOIN_POLL: Duration = Duration::from_millis(300);

/// The local domain's addresses that are Matrix users, and the way to the bridge.
#[derive(Debug, Clone)]
pub(crate) struct ToMatrix {
    prefix: String,
    server_name: String,
    /// `[matrix] users`: user name -> Matrix user id.
    users: BTreeMap<String, String>,
    calls: mpsc::UnboundedSender<SipCall>,
}

/// A SIP call for a Matrix user, as the local domain took it.
#[derive(Debug)]
pub(crate) struct SipCall {
    pub(crate) call: CallHandle,
    pub(crate) invite: IncomingCall,
    pub(crate) events: CallEvents,
    /// The Matrix user called.
    pub(crate) callee: String,
}

impl crate::local::MatrixUsers for ToMatrix {
    fn matrix_user(&self, user: &str) -> Option<String> {
        ToMatrix::matrix_user(self, user)
    }
}

impl ToMatrix {
    pub(super) fn new(config: &MatrixConfig, calls: mpsc::UnboundedSender<SipCall>) -> ToMatrix {
        ToMatrix {
            prefix: config.user_prefix.clone(),
            server_name: config.server_name.clone(),
            users: config.users.clone(),
            calls,
        }
    }

    /// The Matrix user the local domain's `user` is: one `[matrix] users` names, or a user of
    /// the homeserver at the address their calls come from (the user id escaped as ghosts'
    /// localparts are: `=40alice=3aserver`), never a ghost.
    pub(crate) fn matrix_user(&self, user: &str) -> Option<String> {
        if let Some(matrix_user) = self.users.get(user) {
            return Some(matrix_user.clone());
        }
        let id = ghosts::unescape(user)?;
        let ours = id
            .rsplit_once(':')
            .is_some_and(|(_, server)| server == self.server_name);
        // The bridge's whole namespace, ghost or not, is never a Matrix user to call.
        let ghost = id.starts_with(&format!("@{}", self.prefix));
        (ours && !ghost && is_user_id(&id)).then_some(id)
    }

    /// Gives the bridge a call for a Matrix user; refused (480) when the bridge is gone.
    pub(crate) fn call(&self, sip: &SipHandle, call: SipCall) {
        if let Err(error) = self.calls.send(call) {
            let call = error.0;
            reject(sip, call.call, "the Matrix bridge is not running");
        }
    }
}

/// Refuses a SIP call for a Matrix user: 480, with why.
pub(super) fn reject(sip: &SipHandle, call: CallHandle, why: &str) {
    sip.call(
        call,
        CallCommand::Reject {
            code: 480,
            reason: "Temporarily Unavailable".to_owned(),
            warning: Some(Warning::new(Warning::MISCELLANEOUS, why)),
        },
    );
}

/// What the room set-up tells the worker.
#[derive(Debug)]
pub(super) enum Setup {
    /// The ghost opened (or is in) this room with the user: it is remembered.
    Opened { room: String, ghost: String },
    /// The user is in the room: the call goes there.
    Ready {
        room: String,
        ghost: String,
        call: SipCall,
    },
}

/// Finds or opens the room of `ghost` (the caller's) with the callee among `rooms` (the
/// ghost's), waits for the callee to be in it, and hands the call to the worker.
pub(super) async fn open_room(
    bridge: Arc<Bridge>,
    sip: SipHandle,
    mut call: SipCall,
    ghost: String,
    rooms: Vec<String>,
    setup: mpsc::UnboundedSender<Setup>,
) {
    let callee = call.callee.clone();
    sip.call(call.call, CallCommand::Ring);
    let found = tokio::select! {
        found = find_or_open(&bridge, &call.invite, &callee, &ghost, &rooms) => found,
        () = caller_gone(&mut call.events) => {
            debug!(%callee, "the SIP caller gave up while the room was looked for");
            return;
        }
    };
    let room = match found {
        Ok(room) => room,
        Err(why) => {
            info!(%callee, %ghost, "a call for a Matrix user refused: {why}");
            return reject(&sip, call.call, &why);
        }
    };
    let _ = setup.send(Setup::Opened {
        room: room.clone(),
        ghost: ghost.clone(),
    });
    let joined = tokio::select! {
        joined = joined(&bridge, &room, &ghost, &callee) => joined,
        () = caller_gone(&mut call.events) => {
            debug!(%callee, "the SIP caller gave up while the Matrix user was waited for");
            return;
        }
    };
    if let Err(why) = joined {
        info!(%callee, %room, "a call for a Matrix user refused: {why}");
        return reject(&sip, call.call, &why);
    }
    let _ = setup.send(Setup::Ready { room, ghost, call });
}

/// Waits until the caller's call ends (their CANCEL, or the driver giving up).
async fn caller_gone(events: &mut CallEvents) {
    loop {
        match events.recv().await {
            Some(CallEvent::Terminated(_)) | None => return,
            Some(other) => debug!(?other, "caller's event while the Matrix room is set up"),
        }
    }
}

/// The ghost's direct room with the callee (one of `rooms` the callee joined or is invited
/// to, else a new one); refused when it is encrypted.
async fn find_or_open(
    bridge: &Bridge,
    invite: &IncomingCall,
    callee: &str,
    ghost: &str,
    rooms: &[String],
) -> Result<String, String> {
    let homeserver = &bridge.homeserver;
    let unreachable = |error: String| format!("the Matrix homeserver: {error}");
    bridge.register(ghost).await.map_err(unreachable)?;
    for room in rooms {
        let membership = homeserver.membership(room, ghost, callee).await;
        if !matches!(
            membership.ok().flatten().as_deref(),
            Some("join" | "invite")
        ) {
            continue;
        }
        // A direct room: the ghost and the callee, nobody else.
        let joined = homeserver
            .joined_members(room, ghost)
            .await
            .unwrap_or_default();
        if joined
            .iter()
            .any(|member| member != ghost && member != callee)
        {
            continue;
        }
        if homeserver
            .encrypted(room, ghost)
            .await
            .map_err(unreachable)?
        {
            let notice = json!({"msgtype": "m.notice", "body": format!(
                "A call from {} could not ring here: this room is encrypted, and the bridge \
                 cannot take part in encrypted rooms. Leave this room for the next call to \
                 open an unencrypted one.", invite.from_uri)});
            if let Err(error) = homeserver
                .send(room, ghost, "m.room.message", &notice)
                .await
            {
                warn!(%room, "the ghost cannot say why: {error}");
            }
            return Err(format!(
                "the Matrix room of {ghost} with {callee} is encrypted (the bridge cannot call there)"
            ));
        }
        debug!(%room, %ghost, %callee, "a call goes through a room the ghost is in");
        return Ok(room.clone());
    }
    let name = invite
        .display_name
        .clone()
        .unwrap_or_else(|| invite.from_uri.trim_start_matches("sip:").to_owned());
    if let Err(error) = homeserver.set_display_name(ghost, &name).await {
        debug!(%ghost, "the ghost keeps its display name: {error}");
    }
    let room = homeserver
        .create_direct_room(ghost, callee, &name)
        .await
        .map_err(unreachable)?;
    info!(%room, %ghost, %callee, "a ghost opened a room to call a Matrix user");
    Ok(room)
}

/// Waits (up to [`JOIN_WAIT`]) for the callee to join `room`.
async fn joined(bridge: &Bridge, room: &str, ghost: &str, callee: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    loop {
        match bridge.homeserver.membership(room, ghost, callee).await {
            Ok(Some(membership)) if membership == "join" => return Ok(()),
            Ok(Some(membership)) if membership == "leave" || membership == "ban" => {
                return Err(format!("{callee} declined the room of the call"));
            }
            Ok(membership) => debug!(%room, ?membership, "the callee is not in the room yet"),
            Err(error) => debug!(%room, "the callee's membership is not known yet: {error}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{callee} did not join the room of the call within {} s",
                JOIN_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_users_are_named_or_come_back_to_their_own_address() {
        let (calls, _rx) = mpsc::unbounded_channel();
        let config = MatrixConfig {
            server_name: "hs.test".into(),
            users: [("carol".to_owned(), "@carol:other.test".to_owned())].into(),
            ..MatrixConfig::default()
        };
        let to = ToMatrix::new(&config, calls);
        assert_eq!(
            to.matrix_user("carol").as_deref(),
            Some("@carol:other.test")
        );
        assert_eq!(
            to.matrix_user(&ghosts::escape("@alice:hs.test")).as_deref(),
            Some("@alice:hs.test")
        );
        // Users of other homeservers only when named; ghosts never; plain names not.
        assert_eq!(to.matrix_user(&ghosts::escape("@alice:other.test")), None);
        assert_eq!(
            to.matrix_user(&ghosts::escape("@sip_bob=40example.com:hs.test")),
            None
        );
        assert_eq!(to.matrix_user("alice"), None);
        assert_eq!(to.matrix_user("=40alice=3a"), None);
    }
}
