//! HTTP/1.1 requests sent exactly as written, for what the SDK cannot express.

use bytes::Bytes;

/// A response read off the wire without the SDK in between.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl RawResponse {
    /// Value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `<Code>` of an S3 XML error body.
    pub fn error_code(&self) -> Option<String> {
        let text = self.body_text();
        let start = text.find("<Code>")? + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(text[start..end].to_owned())
    }
}

/// Sends one HTTP/1.1 request to `url` (`http://host:port/path?query`) with
/// exactly the given headers plus `Host`.
pub async fn raw_request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> RawResponse {
    use http_body_util::{BodyExt, Full};

    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("bad url {url}: {e}"));
    let authority = uri.authority().expect("url has authority").clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("build raw request");
    let resp = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("read raw body").to_bytes();
    RawResponse { status, headers, body }
}
