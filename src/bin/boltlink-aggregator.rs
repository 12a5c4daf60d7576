//! `boltlink-aggregator`: everything lives in [`boltlink::pipeline::process_main`].

fn main() -> std::process::ExitCode {
    boltlink::pipeline::process_main(boltlink::pipeline::Process::Aggregator)
}
