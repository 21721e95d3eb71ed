//! Generates the prost/tonic code for `dataplane/v1/data_plane.proto` (the SLIM wire) and
//! `conformance/v1/driver.proto` (the session-profile driver) with a vendored `protoc`, so a
//! fresh machine needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads PROTOC from the environment; build scripts are single-threaded.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=dataplane/v1/data_plane.proto");
    println!("cargo:rerun-if-changed=conformance/v1/driver.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // `bytes` fields as `bytes::Bytes`: decoding a payload takes a slice of the received
        // frame instead of copying it, and each receiver's copy of a Publish shares it.
        .bytes(".")
        .compile_protos(
            &[
                "dataplane/v1/data_plane.proto",
                "conformance/v1/driver.proto",
            ],
            &["."],
        )?;
    Ok(())
}
