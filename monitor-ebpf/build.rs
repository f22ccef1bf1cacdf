use which::which;

/// Rebuild the programs when bpf-linker changes (aya-template does the same): the linker is part of
/// the toolchain but cargo does not see it.
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
