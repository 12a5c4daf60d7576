//! `boltlink-aggregator`: everything lives in [`boltlink::pipeline::process_main`].

fn main() -> std::process::ExitCode {
    boltlink::config::daemon_command_line(
        "boltlink-aggregator",
        "BoltLink aggregator: click stream to link counters and analytics rollups, exactly once",
    );
    boltlink::pipeline::process_main(boltlink::pipeline::Process::Aggregator).into()
}
