//! Calls whose answer is read off the wire and not decoded.
//!
//! A full ListContainers or ListPodSandbox answer at N = 1000 takes the client longer to
//! decode (a thousand messages with maps, ~1–2 ms with prost) than a fast endpoint takes to
//! produce it, and that decoding costs the same whichever endpoint sent the bytes. The
//! `(wire)` rows time the call up to the last byte of the answer: what the endpoint and the
//! transport cost, which is what an endpoint can make faster.

use bytes::Buf;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// Encodes the request with prost; "decodes" the answer by counting its bytes.
pub struct WireCodec<T>(std::marker::PhantomData<T>);

impl<T> Default for WireCodec<T> {
    fn default() -> Self {
        WireCodec(std::marker::PhantomData)
    }
}

pub struct RequestEncoder<T>(std::marker::PhantomData<T>);

impl<T: Message + Send + 'static> Encoder for RequestEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

pub struct ByteCounter;

impl Decoder for ByteCounter {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n))
    }
}

impl<T: Message + Send + 'static> Codec for WireCodec<T> {
    type Encode = T;
    type Decode = usize;
    type Encoder = RequestEncoder<T>;
    type Decoder = ByteCounter;

    fn encoder(&mut self) -> Self::Encoder {
        RequestEncoder(std::marker::PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ByteCounter
    }
}

/// Calls `path` (e.g. `/runtime.v1.RuntimeService/ListContainers`) with `request`; returns
/// the answer's length in bytes.
pub async fn call<T: Message + Send + 'static>(
    channel: &Channel,
    path: &'static str,
    request: T,
) -> Result<usize, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    let response = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            WireCodec::<T>::default(),
        )
        .await?;
    Ok(response.into_inner())
}
