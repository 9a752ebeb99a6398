//! latency-lab
fn main() {}
