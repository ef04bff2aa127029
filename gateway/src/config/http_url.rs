//! The address of an HTTP service the gateway calls on its private network (`[local] push_url`,
//! `[matrix] homeserver_url`), checked when the configuration is read.

/// A service's address, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// `host:port`, to connect to and for the Host header.
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl HttpUrl {
    pub(crate) fn parse(url: &str) -> Result<HttpUrl, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!(
                "{url:?} is not an http:// URL (https is not supported: the service is \
                 reached on a private network)"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let valid_path = path.bytes().all(|byte| byte.is_ascii_graphic());
        if authority.is_empty() || authority.contains('@') || !valid_path {
            return Err(format!("{url:?} is not an http://host[:port]/path URL"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, port)| {
            !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit())
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl {
            authority,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_port() {
        let url = HttpUrl::parse("http://127.0.0.1:8400/push").unwrap();
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("127.0.0.1:8400", "/push")
        );
        let url = HttpUrl::parse("http://push.example.com").unwrap();
        assert_eq!(
            (url.authority.as_str(), url.path.as_str()),
            ("push.example.com:80", "/")
        );
        for bad in [
            "https://push.example.com/push",
            "push.example.com",
            "http:///push",
            "http://a@b/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
