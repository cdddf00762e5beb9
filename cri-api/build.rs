//! Generates the CRI v1 bindings from `proto/api.proto` with a vendored protoc,
//! so a fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Hand-written so a server can send containers it encoded once, and answers it
        // kept (src/listing.rs).
        .extern_path(
            ".runtime.v1.ListContainersResponse",
            "crate::listing::ListContainersResponse",
        )
        .extern_path(
            ".runtime.v1.ListPodSandboxResponse",
            "crate::listing::ListPodSandboxResponse",
        )
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
