//! gRPC clients for a CRI endpoint given as `unix:///path.sock` (or a bare absolute path).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cri_api::v1::image_service_client::ImageServiceClient;
use cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

/// kubelet's limit; stats and image lists of a full node exceed tonic's 4 MiB default.
pub const MESSAGE_LIMIT: usize = 16 * 1024 * 1024;

/// The socket path of `unix:///path.sock` or `/path.sock`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        bail!("endpoint {endpoint:?} is not unix:///absolute/path.sock");
    }
    Ok(PathBuf::from(path))
}

/// A channel over the endpoint's unix socket; connects eagerly so a wrong path fails here.
pub async fn channel(endpoint: &str) -> Result<Channel> {
    let path = socket_path(endpoint)?;
    let connector = service_fn(move |_| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

pub fn runtime_client(channel: Channel) -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(channel)
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn image_client(channel: Channel) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(channel)
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}
