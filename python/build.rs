// The extension finds libtorch where pip put torch: site-packages/torch/lib beside this package.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
}
