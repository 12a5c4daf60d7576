//! `boltlink-worker`: everything lives in [`boltlink::pipeline::process_main`].

fn main() -> std::process::ExitCode {
    boltlink::config::daemon_command_line(
        "boltlink-worker",
        "BoltLink click worker: click stream to enriched raw events in PostgreSQL",
    );
    boltlink::pipeline::process_main(boltlink::pipeline::Process::Worker).into()
}
