//! Hashes a file's body with relaxed and simple canonicalization (profiling aid:
//! `valgrind --tool=callgrind target/release/examples/hashbody FILE`).
use authgate::dkim::canon::{BodyHashes, BodySpec, Canon};

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/stdin".into());
    let data = std::fs::read(path)?;
    let mut h = BodyHashes::new([
        BodySpec {
            canon: Canon::Relaxed,
            limit: None,
        },
        BodySpec {
            canon: Canon::Simple,
            limit: None,
        },
    ]);
    for chunk in data.chunks(64 * 1024) {
        h.update(chunk);
    }
    for (spec, hash) in h.finish() {
        println!("{spec:?} {:02x?}", &hash.digest[..4]);
    }
    Ok(())
}
