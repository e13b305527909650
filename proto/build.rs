//! Generates the gRPC code with a vendored `protoc`, so a fresh machine needs no package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("steinadler_descriptor.bin"))
        .bytes(".")
        .compile_protos(&["proto/steinadler.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/steinadler.proto");
    Ok(())
}
