//! Requests to the HTTP services the gateway calls on its private network (the push service,
//! the Matrix homeserver): one HTTP/1.1 connection per request, `http://` only.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tracing::debug;

use crate::config::HttpUrl;

/// The most of a response body read.
const MAX_BODY: usize = 1 << 20;

/// Sends `method path` to the service at `url` (with a JSON body when there is one, and the
/// bearer token when given); its status and body.
pub(crate) async fn request(
    url: &HttpUrl,
    method: hyper::Method,
    path: &str,
    bearer: Option<&str>,
    json: Option<String>,
) -> Result<(u16, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|error| format!("{}: {error}", url.authority))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!("HTTP client connection: {error}");
        }
    });
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, url.authority.as_str());
    if let Some(token) = bearer {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if json.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(http_body_util::Full::new(Bytes::from(
            json.unwrap_or_default(),
        )))
        .map_err(|error| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, body))
}
