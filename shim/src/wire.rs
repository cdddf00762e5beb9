//! The largest answers, sent from their bytes at the HTTP layer: the kept list answers and
//! ListContainerStats.
//!
//! kubelet asks for every sandbox and every container, unfiltered, each second. crius keeps
//! those two answers encoded until something changes (`Table::kept_answer`), but a tonic
//! handler would still copy the kept bytes into a fresh encode buffer for every call: on a
//! node with 1000 containers, ~860 KB allocated, copied and freed per call, and held per
//! client while it is sent. This layer answers those two calls itself: it reads the small
//! request, and when it asks for everything, replies with the gRPC frame header followed by
//! the kept answer's parts (shared `Bytes`, not copied) and `grpc-status: 0`.
//!
//! It answers ListContainerStats the same way, from bytes written straight from the store
//! (`services::stats::list_containers_encoded`) piece by piece as the connection takes them:
//! kubelet asks for every container's stats every ten seconds, and the answer is as large as
//! a full list.
//!
//! Any other request, or one it cannot read, goes on to tonic unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use cri_api::v1 as cri;
use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use prost::Message as _;
use tonic::body::Body;

use crate::error::Error;
use crate::runtime::Crius;
use crate::services::{container, sandbox, stats};
use crate::store::ListAnswer;

const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";
const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
const LIST_CONTAINER_STATS: &str = "/runtime.v1.RuntimeService/ListContainerStats";
const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";
/// The gRPC frame header and the largest message the CRI services accept.
const MAX_LIST_REQUEST: usize = 5 + crate::server::MAX_MESSAGE_BYTES;

/// Wraps the CRI services; see the module documentation.
#[derive(Clone)]
pub struct KeptAnswersLayer {
    crius: Arc<Crius>,
}

impl KeptAnswersLayer {
    pub fn new(crius: Arc<Crius>) -> Self {
        Self { crius }
    }
}

impl<S> tower::Layer<S> for KeptAnswersLayer {
    type Service = KeptAnswers<S>;

    fn layer(&self, inner: S) -> KeptAnswers<S> {
        KeptAnswers {
            inner,
            crius: self.crius.clone(),
        }
    }
}

#[derive(Clone)]
pub struct KeptAnswers<S> {
    inner: S,
    crius: Arc<Crius>,
}

/// Which kept answer a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Containers,
    Sandboxes,
}

impl Listing {
    fn of(path: &str) -> Option<Self> {
        match path {
            LIST_CONTAINERS => Some(Self::Containers),
            LIST_POD_SANDBOX => Some(Self::Sandboxes),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Containers => "ListContainers",
            Self::Sandboxes => "ListPodSandbox",
        }
    }

    /// Whether the request message (without its gRPC frame) asks for every entry.
    fn selects_all(self, message: &[u8]) -> bool {
        match self {
            Self::Containers => cri::ListContainersRequest::decode(message)
                .is_ok_and(|r| container::selects_all(r.filter.as_ref())),
            Self::Sandboxes => cri::ListPodSandboxRequest::decode(message)
                .is_ok_and(|r| sandbox::selects_all(r.filter.as_ref())),
        }
    }

    fn kept(self, crius: &Crius) -> ListAnswer {
        match self {
            Self::Containers => container::all_encoded(crius),
            Self::Sandboxes => sandbox::all_encoded(crius),
        }
    }
}

/// The calls this layer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// From a kept answer, when the request asks for everything.
    Kept(Listing),
    /// Every ListContainerStats request.
    ContainerStats,
    /// PodSandboxStatus of a known sandbox without `verbose`, from its containers' kept
    /// status fields.
    SandboxStatus,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path {
            LIST_CONTAINER_STATS => Some(Self::ContainerStats),
            POD_SANDBOX_STATUS => Some(Self::SandboxStatus),
            _ => Listing::of(path).map(Self::Kept),
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Kept(listing) => listing.method(),
            Self::ContainerStats => "ListContainerStats",
            Self::SandboxStatus => "PodSandboxStatus",
        }
    }

    /// This layer's answer to the request `message` (without its gRPC frame), or `None` to
    /// leave the request to tonic.
    async fn answer(self, crius: &Arc<Crius>, message: &[u8]) -> Option<http::Response<Body>> {
        match self {
            Self::Kept(listing) => {
                if !listing.selects_all(message) {
                    return None;
                }
                let kept = crate::instrument::call(listing.method(), async {
                    Ok::<_, Error>(listing.kept(crius))
                })
                .await
                .ok()?
                .into_inner();
                crate::memory::note_answer(kept.len());
                let len = kept.len();
                let parts = kept.parts;
                grpc_answer(len, (0..parts.len()).map(move |i| parts[i].clone()))
            }
            Self::ContainerStats => {
                let request = cri::ListContainerStatsRequest::decode(message).ok()?;
                let answer = crate::instrument::call(
                    self.method(),
                    stats::list_containers_encoded(crius, request),
                )
                .await;
                match answer {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        grpc_answer(answer.encoded_len(), answer.into_pieces())
                    }
                    Err(status) => Some(status.into_http()),
                }
            }
            Self::SandboxStatus => {
                let request = cri::PodSandboxStatusRequest::decode(message).ok()?;
                if request.verbose || request.pod_sandbox_id.is_empty() {
                    return None;
                }
                // An unknown sandbox goes on to tonic's handler, which says NotFound.
                let found = crius.sandbox(&request.pod_sandbox_id).ok()?;
                let (len, parts) = crate::instrument::call(self.method(), async {
                    Ok::<_, Error>(sandbox::status_encoded(crius, &found))
                })
                .await
                .ok()?
                .into_inner();
                grpc_answer(len, parts.into_iter())
            }
        }
    }
}

/// The message of a request body holding exactly one uncompressed gRPC message.
fn single_message(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let (length, message) = rest.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
    (compressed == 0 && message.len() == length).then_some(message)
}

/// An OK gRPC response carrying one message of `len` bytes, sent as `parts` (shared or
/// freshly encoded `Bytes`, never copied into one buffer); a part is taken from the
/// iterator only when the connection is ready to send it.
fn grpc_answer(
    len: usize,
    parts: impl Iterator<Item = Bytes> + Send + 'static,
) -> Option<http::Response<Body>> {
    let length = u32::try_from(len).ok()?;
    let mut header = BytesMut::with_capacity(5);
    header.put_u8(0);
    header.put_u32(length);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = std::iter::once(http_body::Frame::data(header.freeze()))
        .chain(parts.map(http_body::Frame::data))
        .chain(std::iter::once(http_body::Frame::trailers(trailers)))
        .map(Ok::<_, Infallible>);
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Body::new(body))
        .ok()
}

impl<S> tower::Service<http::Request<Body>> for KeptAnswers<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(route) = Route::of(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service answers this call; a fresh clone waits for the next one.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let crius = self.crius.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_LIST_REQUEST);
            let bytes = match limited.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => {
                    let message = format!("{}: reading the request: {err}", route.method());
                    let status = if err.is::<http_body_util::LengthLimitError>() {
                        tonic::Status::out_of_range(message)
                    } else {
                        tonic::Status::internal(message)
                    };
                    return Ok(status.into_http());
                }
            };
            if let Some(message) = single_message(&bytes) {
                if let Some(answer) = route.answer(&crius, message).await {
                    return Ok(answer);
                }
            }
            let body = Body::new(http_body_util::Full::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    #[test]
    fn only_one_whole_uncompressed_message_is_read() {
        let message = cri::ListContainersRequest::default().encode_to_vec();
        assert_eq!(single_message(&framed(&message)), Some(&message[..]));
        let filter = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: "abc".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec();
        assert_eq!(single_message(&framed(&filter)), Some(&filter[..]));
        let mut compressed = framed(&filter);
        compressed[0] = 1;
        assert_eq!(single_message(&compressed), None);
        let mut short = framed(&filter);
        short.pop();
        assert_eq!(single_message(&short), None);
        let mut two = framed(&filter);
        two.extend(framed(&filter));
        assert_eq!(single_message(&two), None);
        assert_eq!(single_message(&[0, 0, 0]), None);
    }

    #[test]
    fn only_unfiltered_lists_are_answered_here() {
        let all = cri::ListContainersRequest::default().encode_to_vec();
        let empty_filter = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter::default()),
        }
        .encode_to_vec();
        let by_pod = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: "p".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec();
        assert!(Listing::Containers.selects_all(&all));
        assert!(Listing::Containers.selects_all(&empty_filter));
        assert!(!Listing::Containers.selects_all(&by_pod));
        assert!(!Listing::Containers.selects_all(&[0xff, 0xff]));
        let ready = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                state: Some(cri::PodSandboxStateValue { state: 0 }),
                ..Default::default()
            }),
        }
        .encode_to_vec();
        assert!(Listing::Sandboxes.selects_all(&[]));
        assert!(!Listing::Sandboxes.selects_all(&ready));
        assert_eq!(Listing::of(LIST_CONTAINERS), Some(Listing::Containers));
        assert_eq!(Listing::of(LIST_POD_SANDBOX), Some(Listing::Sandboxes));
        assert_eq!(Listing::of("/runtime.v1.RuntimeService/ListImages"), None);
        assert_eq!(
            Route::of(LIST_CONTAINERS),
            Some(Route::Kept(Listing::Containers))
        );
        assert_eq!(Route::of(LIST_CONTAINER_STATS), Some(Route::ContainerStats));
        assert_eq!(Route::of("/runtime.v1.RuntimeService/ContainerStats"), None);
    }

    #[tokio::test]
    async fn the_answer_is_one_grpc_message_of_all_its_parts_then_an_ok_status() {
        // Each part is the encoded list of some containers.
        let parts: Vec<Vec<u8>> = [&["abc"][..], &["d", "ef"], &["g"]]
            .iter()
            .map(|ids| {
                cri::ListContainersResponse {
                    containers: ids
                        .iter()
                        .map(|id| cri::Container {
                            id: id.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect();
        let len = parts.iter().map(Vec::len).sum();
        let answer = grpc_answer(len, parts.clone().into_iter().map(Bytes::from)).unwrap();
        assert_eq!(
            answer.headers()[http::header::CONTENT_TYPE],
            "application/grpc"
        );
        let collected = answer.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        let body = collected.to_bytes();
        assert_eq!(&body[..], &framed(&parts.concat())[..]);
        let decoded = cri::ListContainersResponse::decode(&body[5..]).unwrap();
        let ids: Vec<&str> = decoded.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["abc", "d", "ef", "g"]);
    }
}
