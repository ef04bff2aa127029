//! The Cuttlefish operator's signalling (the C++ `webrtc_operator`'s protocol), sans-IO.
//! Devices register on `/register_device`, clients reach a device through `/connect_client`,
//! and the operator forwards opaque payloads between them: a device addresses its clients by
//! 1-based ids, a client talks to its one device. Every message is a JSON object with a
//! `message_type`; errors are `{"error": "<text>"}`, some followed by a close.

use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// A connection, numbered by the endpoint.
pub(crate) type ConnId = u64;

/// Which endpoint a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Device,
    Client,
}

/// What the hub has for a connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Send(ConnId, Value),
    /// Close it (after what was sent before).
    Close(ConnId),
}

struct Device {
    conn: ConnId,
    info: Value,
    /// Client connections by id - 1; a client that left leaves its slot empty.
    clients: Vec<Option<ConnId>>,
}

enum Conn {
    /// A device connection, with the id it registered.
    Device(Option<String>),
    /// A client connection, with the device and its id there once connected.
    Client(Option<(String, usize)>),
}

/// The devices and their clients.
pub(crate) struct Hub {
    ice_servers: Value,
    conns: HashMap<ConnId, Conn>,
    devices: HashMap<String, Device>,
    out: VecDeque<Output>,
}

impl Hub {
    /// A hub that gives devices and clients these STUN servers (`stun:` added when missing).
    pub(crate) fn new(stun_servers: &[String]) -> Hub {
        let servers: Vec<Value> = stun_servers
            .iter()
            .map(|server| {
                let url = if server.starts_with("stun:") {
                    server.clone()
                } else {
                    format!("stun:{server}")
                };
                json!({"urls": [url]})
            })
            .collect();
        Hub {
            ice_servers: Value::Array(servers),
            conns: HashMap::new(),
            devices: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The `config` message (also served at `/infra_config`).
    pub(crate) fn config(&self) -> Value {
        json!({"message_type": "config", "ice_servers": self.ice_servers})
    }

    /// The registered devices' ids (`/devices`).
    pub(crate) fn device_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.devices.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn connect(&mut self, conn: ConnId, side: Side) {
        let state = match side {
            Side::Device => Conn::Device(None),
            Side::Client => Conn::Client(None),
        };
        self.conns.insert(conn, state);
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, conn: ConnId, message: Value) {
        self.out.push_back(Output::Send(conn, message));
    }

    fn error(&mut self, conn: ConnId, text: &str) {
        self.send(conn, json!({"error": text}));
    }

    /// Sends an error, then closes the connection (and forgets it, as a close does).
    fn fail(&mut self, conn: ConnId, text: &str) {
        self.error(conn, text);
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        self.out.push_back(Output::Close(conn));
        self.disconnect(conn);
    }

    /// A binary frame: not part of the protocol.
    pub(crate) fn binary(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.fail(conn, "Received a binary message");
        }
    }

    /// A text frame (reassembled from its fragments).
    pub(crate) fn receive(&mut self, conn: ConnId, text: &str) {
        let Some(side) = self.conns.get(&conn).map(|state| match state {
            Conn::Device(_) => Side::Device,
            Conn::Client(_) => Side::Client,
        }) else {
            return;
        };
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return self.fail(conn, "Received Invalid JSON");
        };
        let Some(kind) = message.get("message_type").and_then(Value::as_str) else {
            return self.fail(conn, &format!("Invalid message format: '{text}'"));
        };
        match (side, kind) {
            (Side::Device, "register") => self.register(conn, &message),
            (Side::Device, "forward") => self.device_forward(conn, &message),
            (Side::Client, "connect") => self.client_connect(conn, &message),
            (Side::Client, "forward") => self.client_forward(conn, &message),
            _ => self.error(conn, &format!("Unknown message type: {kind}")),
        }
    }

    fn register(&mut self, conn: ConnId, message: &Value) {
        if let Some(Conn::Device(Some(id))) = self.conns.get(&conn) {
            let text = format!("Device already registered: {id}");
            return self.fail(conn, &text);
        }
        let id = message
            .get("device_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if id.is_empty() {
            return self.fail(conn, "Missing device id in registration request");
        }
        if self.devices.contains_key(id) {
            // The reference only logs this one, and closes.
            return self.close(conn);
        }
        self.devices.insert(
            id.to_owned(),
            Device {
                conn,
                info: message.get("device_info").cloned().unwrap_or(Value::Null),
                clients: Vec::new(),
            },
        );
        self.conns.insert(conn, Conn::Device(Some(id.to_owned())));
        let config = self.config();
        self.send(conn, config);
    }

    fn device_forward(&mut self, conn: ConnId, message: &Value) {
        let Some(client_id) = message.get("client_id").and_then(Value::as_u64) else {
            return self.fail(conn, "Forward failed: Missing or invalid client id");
        };
        let Some(payload) = message.get("payload") else {
            return self.fail(conn, "Forward failed: Missing payload");
        };
        let device = match self.conns.get(&conn) {
            Some(Conn::Device(Some(id))) => self.devices.get(id),
            _ => None,
        };
        let slot = usize::try_from(client_id)
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|index| device.and_then(|device| device.clients.get(index)));
        match slot {
            None => self.error(conn, &format!("Forward failed: Unknown client {client_id}")),
            Some(None) => self.send(
                conn,
                json!({"message_type": "client_disconnected", "client_id": client_id}),
            ),
            Some(Some(client)) => {
                let client = *client;
                self.send(
                    client,
                    json!({"message_type": "device_msg", "payload": payload}),
                );
            }
        }
    }

    fn client_connect(&mut self, conn: ConnId, message: &Value) {
        if let Some(Conn::Client(Some(_))) = self.conns.get(&conn) {
            return self.fail(
                conn,
                "Attempt to connect to multiple devices over same websocket",
            );
        }
        let Some(id) = message.get("device_id").and_then(Value::as_str) else {
            return self.fail(conn, "Invalid connection request: Missing device id");
        };
        // The config goes first, even for an unknown device, so that a client can wait.
        let config = self.config();
        self.send(conn, config);
        let Some(device) = self.devices.get_mut(id) else {
            let text = format!("Connection failed: Device not found: '{id}'");
            return self.fail(conn, &text);
        };
        device.clients.push(Some(conn));
        let client_id = device.clients.len();
        let info = device.info.clone();
        self.conns
            .insert(conn, Conn::Client(Some((id.to_owned(), client_id))));
        self.send(
            conn,
            json!({"message_type": "device_info", "device_info": info}),
        );
    }

    fn client_forward(&mut self, conn: ConnId, message: &Value) {
        let Some(Conn::Client(Some((device_id, client_id)))) = self.conns.get(&conn) else {
            return self.fail(conn, "Forward failed: No device associated to client");
        };
        let (device_id, client_id) = (device_id.clone(), *client_id);
        let Some(payload) = message.get("payload") else {
            return self.fail(conn, "Forward failed: No payload present in message");
        };
        let Some(device) = self.devices.get(&device_id) else {
            return self.fail(conn, "Forward failed: Device disconnected");
        };
        let device = device.conn;
        self.send(
            device,
            json!({"message_type": "client_msg", "client_id": client_id, "payload": payload}),
        );
    }

    /// The connection closed: a device is unregistered (its clients learn on their next
    /// forward), a client's device gets `client_disconnected`.
    pub(crate) fn disconnect(&mut self, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(Conn::Device(Some(id))) => {
                self.devices.remove(&id);
            }
            Some(Conn::Client(Some((device_id, client_id)))) => {
                if let Some(device) = self.devices.get_mut(&device_id) {
                    if let Some(slot) = device.clients.get_mut(client_id - 1) {
                        *slot = None;
                    }
                    let device = device.conn;
                    self.send(
                        device,
                        json!({"message_type": "client_disconnected", "client_id": client_id}),
                    );
                }
            }
            _ => {}
        }
    }
}
