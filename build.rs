// The built-in scripts and modules are embedded with include_dir; rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=scripts");
    println!("cargo:rerun-if-changed=stdlib");
}
