// A Matrix VoIP client for the end-to-end tests: matrix-js-sdk's own 1:1 call implementation
// (MatrixCall, MSC2746), as Element Web uses it, in the test's chromium. tests/install-peers
// bundles it (esbuild) into matrix-call.bundle.js; the test loads the bundle into a page of the
// homeserver's origin (a secure context on 127.0.0.1, and the client-server API same-origin)
// and drives it through `window.mx`.
//
// The remote audio plays in <audio id="remote-audio">, where the driver's `tone` command
// listens; the fake microphone (the driver's WAV file) is what the far end hears.
import * as sdk from 'matrix-js-sdk';
import { CallErrorCode, CallEvent, createNewMatrixCall } from 'matrix-js-sdk/lib/webrtc/call.js';
import { CallEventHandlerEvent } from 'matrix-js-sdk/lib/webrtc/callEventHandler.js';

const state = { client: null, call: null, incoming: [], log: [] };

function note(line) {
  state.log.push(`${new Date().toISOString()} ${line}`);
}

/** The remote stream of `call` goes to the page's audio element. */
function attach(call) {
  const stream = call.remoteUsermediaStream;
  if (!stream) return;
  let audio = document.getElementById('remote-audio');
  if (!audio) {
    audio = document.createElement('audio');
    audio.id = 'remote-audio';
    audio.autoplay = true;
    document.body.appendChild(audio);
  }
  if (audio.srcObject !== stream) {
    audio.srcObject = stream;
    audio.play().catch((error) => note(`play: ${error}`));
  }
}

function track(call) {
  state.call = call;
  call.on(CallEvent.State, (now) => note(`call ${call.callId} state ${now}`));
  call.on(CallEvent.Hangup, () => note(`call ${call.callId} hangup ${call.hangupReason}`));
  call.on(CallEvent.Error, (error) => note(`call ${call.callId} error ${error.code} ${error.message}`));
  call.on(CallEvent.FeedsChanged, () => attach(call));
  call.on(CallEvent.Replaced, (other) => {
    note(`call ${call.callId} replaced by ${other.callId}`);
    track(other);
  });
}

window.mx = {
  /** Logs in with a token and syncs until the client is ready. */
  async start(baseUrl, userId, accessToken) {
    const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId: 'CHROMIUM' });
    state.client = client;
    client.on(CallEventHandlerEvent.Incoming, (call) => {
      note(`incoming ${call.callId} from ${call.getOpponentMember()?.userId}`);
      state.incoming.push(call.callId);
      track(call);
    });
    const ready = new Promise((resolve, reject) => {
      client.on(sdk.ClientEvent.Sync, (now) => {
        if (now === 'PREPARED' || now === 'SYNCING') resolve();
        if (now === 'ERROR') reject(new Error('sync failed'));
      });
    });
    await client.startClient({ initialSyncLimit: 10 });
    await ready;
    note(`started as ${userId}; voip ${client.supportsVoip()}`);
  },
  /** The rooms the user is invited to. */
  invites() {
    return state.client.getRooms()
      .filter((room) => room.getMyMembership() === 'invite')
      .map((room) => room.roomId);
  },
  async join(roomId) {
    await state.client.joinRoom(roomId);
  },
  /** Places a voice call in `roomId`: its call id. */
  async call(roomId) {
    const call = createNewMatrixCall(state.client, roomId);
    if (!call) throw new Error('this browser cannot make Matrix calls');
    track(call);
    await call.placeVoiceCall();
    return call.callId;
  },
  async answer() {
    await state.call.answer(true, false);
  },
  reject() {
    state.call.reject();
  },
  hangup() {
    state.call.hangup(CallErrorCode.UserHangup, false);
  },
  dtmf(digit) {
    state.call.sendDtmfDigit(digit);
  },
  /** The current call: its id, state, hang-up reason, and what happened so far. */
  status() {
    const call = state.call;
    return {
      callId: call?.callId ?? null,
      state: call?.state ?? null,
      reason: call?.hangupReason ?? null,
      incoming: state.incoming,
      remoteAudio: Boolean(document.getElementById('remote-audio')?.srcObject),
      remoteFeeds: call?.getRemoteFeeds().length ?? 0,
      log: state.log.join('\n'),
    };
  },
};
