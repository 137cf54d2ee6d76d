fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    let mut config = tonic_prost_build::configure();
    // A store action's object behind a `Box`: a transaction stages thousands of them, and
    // inline each action took the size of the largest kind (a service, 2.2 KiB), moved
    // whole at every step.
    for kind in [
        "node", "service", "task", "cluster", "network", "stack", "secret", "config",
    ] {
        config = config.boxed(format!(".shoal.v1.StoreAction.object.{kind}"));
    }
    config.compile_protos(&["proto/shoal.proto"], &["proto"])?;
    Ok(())
}
