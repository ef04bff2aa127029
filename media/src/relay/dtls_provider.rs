//! The browser legs' DTLS engines, made from one shared configuration.
//!
//! str0m's default provider builds a new DTLS configuration for every peer connection, and
//! building one checks the crypto provider by running a test key exchange in every group it
//! offers (X25519, P-256 and P-384). That check cost about half of the gateway's CPU per call
//! set-up (profiled on a burst of 600 calls: P-384 point multiplication alone was 15% of it),
//! for a result that cannot change within a process. Here the configuration is built once per
//! MTU and shared (`Arc`); each call still gets its own DTLS engine, certificate and keys.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The provider given to every browser leg's `Rtc`: str0m's own for everything but DTLS.
pub(super) fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = str0m::crypto::from_feature_flags();
            provider.dtls_provider = &SHARED;
            Arc::new(provider)
        })
        .clone()
}

static SHARED: SharedConfig = SharedConfig {
    configs: Mutex::new(Vec::new()),
};

/// DTLS engines from configurations built once per MTU.
#[derive(Debug)]
struct SharedConfig {
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfig {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self
            .configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, config)) = configs.iter().find(|(key, _)| *key == mtu) {
            return Ok(config.clone());
        }
        // As str0m's provider configures it: ICE has checked return routability before DTLS
        // starts, so the server's cookie exchange would add a round trip for nothing.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|error| CryptoError::Other(format!("DTLS configuration: {error}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfig {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "DTLS version {other} is not supported"
                )));
            }
        };
        Ok(Box::new(Engine(dtls)))
    }
}

/// One DTLS engine, as str0m drives it.
struct Engine(dimpl::Dtls);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl DtlsInstance for Engine {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One configuration per MTU, built once and shared by every engine made with it.
    #[test]
    fn a_configuration_is_built_once_per_mtu() {
        let shared = SharedConfig {
            configs: Mutex::new(Vec::new()),
        };
        let first = shared.config(None).unwrap();
        let again = shared.config(None).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = shared.config(Some(1200)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        let cert = shared.generate_certificate().expect("a certificate");
        let engine = shared
            .new_dtls(&cert, Instant::now(), DtlsVersion::Auto, None)
            .unwrap();
        assert!(!engine.is_closed());
        assert_eq!(shared.configs.lock().unwrap().len(), 2);
    }

    /// Start-up makes the configuration the browser legs use, so the first call finds it.
    #[test]
    fn start_up_makes_the_shared_configuration() {
        crate::init_crypto();
        // Made on a thread of its own: it is there within moments. (Any test's relay makes the
        // configuration too, so the preparation is counted rather than the configuration.)
        let prepared = || crate::relay::PREPARED.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while prepared() == 0 {
            assert!(Instant::now() < deadline, "not prepared after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!SHARED.configs.lock().unwrap().is_empty());
        crate::init_crypto();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(prepared(), 1, "prepared once, whatever the calls");
    }
}
