//! Fault injection between the controllers and the API server: writes that
//! fail with a conflict or a server error before reaching the server, and
//! watch streams cut off early (the informer must resume or relist).

use std::sync::Arc;

use bytes::Bytes;
use client::{ClientError, Transport};
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};

use crate::clock::SeededRandom;

/// Probabilities of each fault, per request (writes) or per watch frame.
#[derive(Clone, Debug, Default)]
pub struct FaultRates {
    pub write_conflict: f64,
    pub write_error: f64,
    pub watch_drop: f64,
}

pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    rates: FaultRates,
    random: Arc<SeededRandom>,
}

impl FaultyTransport {
    pub fn new(
        inner: Arc<dyn Transport>,
        rates: FaultRates,
        random: Arc<SeededRandom>,
    ) -> FaultyTransport {
        FaultyTransport {
            inner,
            rates,
            random,
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response<apiserver::ResponseBody> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code, "reason": reason, "message": message,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}

impl Transport for FaultyTransport {
    fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> BoxFuture<'_, Result<Response<apiserver::ResponseBody>, ClientError>> {
        Box::pin(async move {
            let is_write = request.method() != Method::GET;
            let is_watch = request
                .uri()
                .query()
                .is_some_and(|q| q.contains("watch=true"));
            if is_write && self.random.chance(self.rates.write_conflict) {
                return Ok(status(
                    409,
                    "Conflict",
                    "injected fault: the object has been modified",
                ));
            }
            if is_write && self.random.chance(self.rates.write_error) {
                return Ok(status(
                    500,
                    "InternalError",
                    "injected fault: internal error",
                ));
            }
            let response = self.inner.send(request).await?;
            if !is_watch || self.rates.watch_drop <= 0.0 {
                return Ok(response);
            }
            // Cut the stream after a random frame: the watcher sees a plain end.
            let (parts, body) = response.into_parts();
            let random = self.random.clone();
            let rate = self.rates.watch_drop;
            let frames = futures::stream::unfold((body, false), move |(mut body, cut)| {
                let random = random.clone();
                async move {
                    if cut {
                        return None;
                    }
                    let frame = body.frame().await?;
                    let cut = random.chance(rate);
                    Some((frame, (body, cut)))
                }
            });
            Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()))
        })
    }
}
