//! A minimal HTTP/1.1 client for the tests and examples of `portcullis::tower`: one request
//! per connection over real TCP, the response read whole.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Sends `req` to `addr` on a fresh connection; returns the response with its body read.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let response = sender.send_request(req).await.expect("response");
    let (head, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Response::from_parts(head, body)
}

/// A GET of `path` with `headers`.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(path).header("host", "test");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body(Full::new(Bytes::new())).expect("a request")
}
