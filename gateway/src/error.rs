//! The gateway's error type: what can stop it from starting or running.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the gateway cannot start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown keys.
    #[error("invalid configuration: {0}")]
    ConfigParse(toml::de::Error),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    ConfigInvalid(String),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SIP transports could not be bound.
    #[error("cannot listen for SIP on {addr}: {source}")]
    SipBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The media relay's browser port could not be bound.
    #[error("cannot listen for media on {addr}: {source}")]
    MediaBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The message store refused to open (its configuration, or a schema it does not know).
    #[error("{0}")]
    Store(store::Error),
    /// Serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}
