//! Asking a running `portcullis serve`'s admin API (inspect and reset with `--server`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::args::TokenArgs;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The admin API's token, from `file` or `PORTCULLIS_ADMIN_TOKEN`, trimmed; `flag` names the
/// option that gives the file, for the error.
pub fn read_token(file: Option<&Path>, flag: &str) -> Result<String, String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?,
        None => std::env::var("PORTCULLIS_ADMIN_TOKEN").map_err(|_| {
            format!("the admin API needs its token: {flag} FILE or PORTCULLIS_ADMIN_TOKEN")
        })?,
    };
    Ok(token.trim().to_owned())
}

/// Sends one request to the admin API; returns the status and the body.
pub fn admin(
    server: SocketAddr,
    auth: &TokenArgs,
    method: Method,
    target: &str,
    json: Option<String>,
) -> Result<(u16, String), String> {
    let token = read_token(auth.token_file.as_deref(), "--token-file")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| format!("cannot reach {server}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot talk to {server}: {e}"))?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .header(HOST, server.to_string())
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if json.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{server}: {e}"))?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    };
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{server} did not answer within {TIMEOUT:?}"))?
    })
}
